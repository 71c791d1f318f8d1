"""`tracker-backup archive` and the commands that read its archive, through the real CLI:
restore --at, status, list, run (snapshot becomes a base), prune, drill, refusals."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Cli, write_config
from support.polling import wait_for
from support.tracker_db import create_tracker_db, invariant


@pytest.fixture
def setup(tmp_path):
    db = create_tracker_db(tmp_path / "db" / "tracker.db" if (tmp_path / "db").mkdir() is None
                           else tmp_path, rows=2000)
    cfg = write_config(tmp_path / "tb.conf", f"""
[backup]
path = {tmp_path / "backups"}
[retention]
keep_days = 0
keep_last = 1
[sqlite]
database = {db}
continuous = yes
""")
    return Cli(cfg), db


@dataclass
class _Archiver:
    proc: subprocess.Popen
    returncode: int | None = None
    err: str = ""


@contextlib.contextmanager
def _archiving(cli: Cli, tmp_path: Path) -> Iterator[_Archiver]:
    """`tracker-backup archive`, from its first base on; on leaving, stopped with SIGTERM,
    its exit code and stderr then in the record yielded."""
    archiver = _Archiver(cli.popen("archive"))
    try:
        wait_for(lambda: list((tmp_path / "backups" / "archive" / "sqlite").glob("*/base-*.json")),
                 what="the archive's first base", proc=archiver.proc)
        yield archiver
    finally:
        archiver.proc.send_signal(signal.SIGTERM)
        _out, archiver.err = archiver.proc.communicate(timeout=60)
        archiver.returncode = archiver.proc.returncode


def test_archive_then_restore_at_latest_status_and_list(tmp_path, setup, start_writer):
    cli, db = setup
    with _archiving(cli, tmp_path) as archiver:
        w = start_writer(db, rate=150, existing=2000)
        time.sleep(2)
        status = json.loads(cli("status", "--json", check=True).stdout)
        arch = status["archive"]["sqlite"]
        assert arch["newest"] and arch["oldest"] < arch["newest"]
        assert not [x for x in status["warnings"] if "archive" in x]
        assert "continuous archive: sqlite: restorable" in cli("list", check=True).stdout
        w.stop()
        time.sleep(1)
        out = cli("restore", "--kind", "sqlite", "--at", "latest", "--to", str(tmp_path / "r.db"),
                  check=True).stdout
    err = archiver.err
    assert archiver.returncode == 0, err
    assert "reached the commit seen at" in out
    live = sqlite3.connect(db)
    restored = sqlite3.connect(tmp_path / "r.db")
    assert invariant(restored) == invariant(live)
    assert "new archive generation" in err and "first start" in err


def test_a_runs_snapshot_becomes_the_base_and_prune_keeps_what_it_needs(tmp_path, setup, start_writer):
    cli, db = setup
    with _archiving(cli, tmp_path) as archiver:
        w = start_writer(db, rate=150, existing=2000)
        time.sleep(1.5)
        cli("run", check=True)  # prunes too: keep_last = 1
        snap = json.loads(cli("list", "--json", check=True).stdout)[0]
        manifest = json.loads((tmp_path / "backups" / snap["id"] / "MANIFEST.json").read_text())
        position = manifest["sources"]["sqlite"].get("archive_position")
        assert position and position["frame"] > 0, manifest["sources"]["sqlite"]
        time.sleep(1.5)
        w.stop()
        time.sleep(1)
    err = archiver.err
    assert archiver.returncode == 0, err
    out = cli("restore", "--kind", "sqlite", "--at", "latest", "--to", str(tmp_path / "r.db"),
              check=True).stdout
    assert f"from snapshot {snap['id']}" in out, (out, err)
    assert invariant(sqlite3.connect(tmp_path / "r.db")) == invariant(sqlite3.connect(db))
    cli("prune", check=True)  # (the run's own prune may already have done it)
    from tracker_backup.archive.store import SourceArchive
    from tracker_backup.engines.sqlite.archive.position import resolve

    gen = SourceArchive(tmp_path / "backups", "sqlite").current()
    _gen_id, snap_seq = resolve(tmp_path / "backups", position)
    assert [b.seq for b in gen.bases() if b.seq < snap_seq] == [], "an own base older than the kept snapshot"
    assert 1 < gen.start()[0] <= snap_seq + 1, "segments before the kept snapshot were not removed"
    # What the kept snapshot needs is still there: the latest state is still restorable.
    cli("restore", "--kind", "sqlite", "--at", "latest", "--to", str(tmp_path / "r2.db"), check=True)
    assert invariant(sqlite3.connect(tmp_path / "r2.db")) == invariant(sqlite3.connect(db))
    # ... but not a time before the kept snapshot's base any more.
    early = cli("restore", "--kind", "sqlite", "--at", "2000-01-01T00:00:00Z", "--to",
                str(tmp_path / "r3.db"))
    assert early.returncode == 1 and "reaches back to" in early.stderr


def test_drill_also_restores_a_random_second_of_the_archive(tmp_path, setup, start_writer):
    cli, db = setup
    with _archiving(cli, tmp_path):
        w = start_writer(db, rate=150, existing=2000)
        time.sleep(1.5)
        cli("run", check=True)
        time.sleep(1)
        w.stop()
    result = json.loads(cli("drill", "--json", check=True).stdout)
    arch = result["details"]["sqlite-archive"]
    assert arch["integrity"] == "ok" and arch["entries_applied"] >= 0
    assert arch["at"] >= arch["commit_time"]


def test_status_warns_when_the_configured_archiver_does_not_report(tmp_path, setup):
    cli, _db = setup
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert any("no archiver has reported" in w for w in status["warnings"]), status["warnings"]


def test_rollback_journal_database_is_refused_with_exit_2(tmp_path):
    db = create_tracker_db(tmp_path / "rb.db", rows=10, wal=False)
    cli = Cli(write_config(tmp_path / "tb.conf", f"[backup]\npath = {tmp_path / 'b'}\n"
                                                 f"[sqlite]\ndatabase = {db}\ncontinuous = yes\n"))
    proc = cli("archive", timeout=60)
    assert proc.returncode == 2 and "tracker-backup sqlite-wal" in proc.stderr


def test_restore_at_refuses_bad_usage(tmp_path, setup):
    cli, _db = setup
    assert cli("restore", "--at", "latest").returncode == 2
    assert cli("restore", "--kind", "sqlite", "--at", "yesterday").returncode == 2
    assert cli("restore", "20261201T000000Z", "--kind", "sqlite", "--at", "latest").returncode == 2
    assert cli("archive", config=write_config(tmp_path / "off.conf", f"[backup]\npath = {tmp_path}/b\n"
                                              f"[sqlite]\ndatabase = {_db}\n")).returncode == 2
