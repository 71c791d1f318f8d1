"""SQLite source under a real concurrent writer: WAL snapshots, rollback locks, maintenance window."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Cli, write_config
from support.backup_dir import published, read_manifest
from support.tracker_db import create_tracker_db, info_hash, invariant, open_copy

NOBODY = 65534
REASSEMBLE = Path(__file__).resolve().parents[3] / "packaging" / "tracker-backup-reassemble.py"


def snapshot_db(backups: Path, tmp_path: Path) -> Path:
    """The newest snapshot's database, by hand: the zstd CLI for a full copy, the
    shipped reader (packaging/tracker-backup-reassemble.py) for a page snapshot."""
    snaps = sorted(p for p in backups.iterdir() if p.name[:1].isdigit())
    art = next((snaps[-1] / "sqlite").iterdir())
    out = tmp_path / f"restored-{snaps[-1].name}.db"
    if art.suffix == ".pages":
        subprocess.run(["/usr/bin/python3", str(REASSEMBLE), str(snaps[-1]), str(out)], check=True,
                       capture_output=True)
    elif art.suffix == ".zst":
        subprocess.run(["zstd", "-q", "-d", "-f", str(art), "-o", str(out)], check=True)
    else:
        out.write_bytes(art.read_bytes())
    return out


def manifest(backups: Path) -> dict:
    return read_manifest(published(backups)[-1])


def sqlite_config(tmp_path: Path, db: Path, extra: str = "", backup_extra: str = "") -> Path:
    return write_config(tmp_path / "sqlite.conf", f"""
[backup]
path = {tmp_path / "backups"}
{backup_extra}
[sqlite]
database = {db}
{extra}
""")


def test_wal_snapshot_under_live_writer_is_one_consistent_copy_and_writer_sees_no_errors(
        tmp_path, start_writer):
    db = create_tracker_db(tmp_path / "tracker.db", rows=60_000, pad=200)  # ~20 MB
    writer = start_writer(db, rate=400, existing=60_000)
    time.sleep(0.5)
    committed_before = writer.stats()["last_new_committed"]
    ops_before = writer.stats()["ops"]
    # 5 MB/s stretches the copy over several seconds while the writer keeps committing.
    cli = Cli(sqlite_config(tmp_path, db, backup_extra="rate_limit = 5"))
    proc = cli("run", check=True)
    during = writer.stats()["ops"]
    time.sleep(0.3)
    stats = writer.stop()

    copy = snapshot_db(tmp_path / "backups", tmp_path)
    conn = open_copy(copy)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    total, metric = invariant(conn)
    assert total == metric, "torn copy: sum(completed) differs from the aggregate metric"
    assert committed_before >= 10**9, "writer committed no new torrents before the run"
    present = conn.execute("SELECT count(*) FROM torrents WHERE info_hash BETWEEN ? AND ?",
                           (info_hash(10**9), info_hash(committed_before))).fetchone()[0]
    assert present == committed_before - 10**9 + 1, "rows committed before the run are missing"
    m = manifest(tmp_path / "backups")
    src = m["sources"]["sqlite"]
    assert src["method"] == "wal-snapshot" and src["journal_mode"] == "wal"
    assert src["check"]["result"] == "ok" and src["check"]["pragma"] == "integrity_check"
    assert src["row_counts"]["torrents"] == conn.execute("SELECT count(*) FROM torrents").fetchone()[0]
    assert src["copy_seconds"] > 2, "rate_limit was not honoured (copy too fast to overlap writes)"
    assert stats["errors"] == 0, stats["last_error"]
    # It kept committing through the copy (a count, not a rate: a loaded host slows it).
    assert during - ops_before >= 20, (ops_before, during)
    assert "succeeded" in proc.stderr


def test_rollback_journal_small_db_is_copied_under_a_lock_shorter_than_max_lock(
        tmp_path, start_writer):
    db = create_tracker_db(tmp_path / "tracker.db", rows=20_000, wal=False)
    writer = start_writer(db, rate=300, existing=20_000)
    cli = Cli(sqlite_config(tmp_path, db, "max_lock = 2s"))
    cli("run", check=True)
    stats = writer.stop()
    src = manifest(tmp_path / "backups")["sources"]["sqlite"]
    assert src["journal_mode"] == "rollback" and src["method"] == "locked-copy"
    assert src["read_transaction_seconds"] < 2.0
    assert stats["errors"] == 0, stats["last_error"]
    conn = open_copy(snapshot_db(tmp_path / "backups", tmp_path))
    total, metric = invariant(conn)
    assert total == metric


def test_rollback_journal_copy_longer_than_max_lock_fails_cleanly_naming_both_fixes(
        tmp_path, start_writer):
    db = create_tracker_db(tmp_path / "tracker.db", rows=30_000, wal=False, pad=100)
    writer = start_writer(db, rate=300, existing=30_000)
    # 1 MB/s makes the copy take seconds; max_lock 0.3s must abort it and release the lock.
    cli = Cli(sqlite_config(tmp_path, db, "max_lock = 300ms", backup_extra="rate_limit = 1"))
    t0 = time.monotonic()
    proc = cli("run")
    elapsed = time.monotonic() - t0
    stats = writer.stop()
    assert proc.returncode == 1
    assert "max_lock" in proc.stderr and "sqlite-wal" in proc.stderr and "stop_command" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name[:1].isdigit()]
    assert stats["errors"] == 0, stats["last_error"]
    assert stats["max_ms"] < 2000, "the writer was blocked far longer than max_lock"
    assert elapsed < 30


def _window_scripts(tmp_path: Path, stop_body: str = "") -> tuple[Path, Path, Path]:
    log = tmp_path / "window.log"
    stop = tmp_path / "stop.sh"
    start = tmp_path / "start.sh"
    stop.write_text(f"#!/bin/sh\necho stop >> {log}\n{stop_body}\n")
    start.write_text(f"#!/bin/sh\necho start >> {log}\n")
    stop.chmod(0o755)
    start.chmod(0o755)
    return stop, start, log


def test_maintenance_window_is_used_when_the_lock_would_be_too_long(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=30_000, wal=False, pad=100)
    stop, start, log = _window_scripts(tmp_path)
    cli = Cli(sqlite_config(tmp_path, db, f"max_lock = 100ms\nstop_command = {stop}\n"
                                          f"start_command = {start}", backup_extra="rate_limit = 4"))
    proc = cli("run", check=True)
    assert log.read_text().split() == ["stop", "start"]
    src = manifest(tmp_path / "backups")["sources"]["sqlite"]
    assert src["method"] == "maintenance-window"
    assert src["downtime_seconds"] > 0
    assert "tracker was stopped for" in proc.stderr


def test_start_command_runs_even_when_the_copy_fails(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=30_000, wal=False, pad=100)
    # The stop command damages the database header, so the copy inside the window fails.
    stop, start, log = _window_scripts(
        tmp_path, f"printf 'garbage-garbage-garbage' | dd of={db} bs=1 seek=0 conv=notrunc 2>/dev/null")
    cli = Cli(sqlite_config(tmp_path, db, f"max_lock = 10ms\nstop_command = {stop}\n"
                                          f"start_command = {start}", backup_extra="rate_limit = 4"))
    proc = cli("run")
    assert proc.returncode == 1
    assert log.read_text().split() == ["stop", "start"]
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name[:1].isdigit()]


def test_start_command_runs_when_stop_command_fails(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=30_000, wal=False, pad=100)
    stop, start, log = _window_scripts(tmp_path, "echo 'cannot stop tracker' >&2; exit 7")
    cli = Cli(sqlite_config(tmp_path, db, f"max_lock = 10ms\nstop_command = {stop}\n"
                                          f"start_command = {start}", backup_extra="rate_limit = 4"))
    proc = cli("run")
    assert proc.returncode == 1
    assert "stop_command" in proc.stderr and "cannot stop tracker" in proc.stderr
    assert log.read_text().split() == ["stop", "start"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create files owned by another uid")
def test_side_files_the_agent_causes_belong_to_the_database_owner(tmp_path, start_writer,
                                                                   world_tmp):
    dbdir = world_tmp / "db"
    dbdir.mkdir(mode=0o750)
    db = create_tracker_db(dbdir / "tracker.db", rows=2000, wal=True)
    for p in dbdir.iterdir():
        p.unlink() if p != db else None
    os.chown(dbdir, NOBODY, NOBODY)
    os.chown(db, NOBODY, NOBODY)
    db.chmod(0o640)
    cli = Cli(sqlite_config(tmp_path, db))
    cli("run", check=True)  # as root, with no tracker running: the agent creates -wal/-shm
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db}{suffix}")
        assert side.exists(), f"reading a WAL database creates {side.name}"
        if side.exists():
            st = side.stat()
            assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), f"{side.name} owned by root"
            assert stat.S_IMODE(st.st_mode) == 0o640
    # The tracker (as nobody) can still write after the agent touched the database.
    writer = start_writer(db, rate=200, existing=2000, user=str(NOBODY), stats_dir=world_tmp)
    time.sleep(0.5)
    cli("run", check=True)
    stats = writer.stop()
    assert stats["errors"] == 0, stats["last_error"]
    assert stats["ops"] > 50


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create files owned by another uid")
def test_sqlite_wal_converts_and_keeps_owner_and_mode(tmp_path, world_tmp):
    db = create_tracker_db(world_tmp / "tracker.db", rows=1000, wal=False)
    os.chown(db, NOBODY, NOBODY)
    db.chmod(0o604)
    cli = Cli(sqlite_config(tmp_path, db))
    proc = cli("sqlite-wal", check=True)
    assert "rollback -> wal" in proc.stdout
    st = db.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o604)
    with open(db, "rb") as fh:
        header = fh.read(20)
    assert header[18] == 2 and header[19] == 2, "header does not say WAL"
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db}{suffix}")
        if side.exists():
            assert (side.stat().st_uid, side.stat().st_gid) == (NOBODY, NOBODY)
    again = cli("sqlite-wal", check=True)
    assert "already uses WAL" in again.stdout
    cli("run", check=True)
    assert manifest(tmp_path / "backups")["sources"]["sqlite"]["method"] == "wal-snapshot"


def test_corrupt_database_fails_the_check_and_publishes_nothing(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=20_000, wal=False)
    # Damage a b-tree page in the middle of the file (keep the header valid).
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.seek((size // 4096 // 2) * 4096 + 100)
        fh.write(b"\xff" * 512)
    proc = Cli(sqlite_config(tmp_path, db))("run")
    assert proc.returncode == 1
    assert "integrity_check" in proc.stderr or "malformed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name[:1].isdigit()]


def test_database_without_the_tracker_tables_fails_naming_them(tmp_path):
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE torrents (id INTEGER)")
    conn.commit()
    conn.close()
    proc = Cli(sqlite_config(tmp_path, db))("run")
    assert proc.returncode == 1
    assert "missing tables keys, whitelist" in proc.stderr


def test_not_a_database_is_a_clear_error(tmp_path):
    db = tmp_path / "tracker.db"
    db.write_text("this is not sqlite\n" * 10)
    proc = Cli(sqlite_config(tmp_path, db))("run")
    assert proc.returncode == 1
    assert "is not a SQLite 3 database" in proc.stderr


def test_quick_verify_level_uses_quick_check(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=1000)
    Cli(sqlite_config(tmp_path, db, backup_extra="verify = quick"))("run", check=True)
    assert manifest(tmp_path / "backups")["sources"]["sqlite"]["check"]["pragma"] == "quick_check"


def test_uncompressed_copy_is_a_plain_sqlite_file(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=1000)
    Cli(sqlite_config(tmp_path, db, backup_extra="compression = none\nlayout = full"))(
        "run", check=True)
    m = manifest(tmp_path / "backups")
    assert [a["path"] for a in m["artifacts"]] == ["sqlite/tracker.db"]
    snap = sorted(p for p in (tmp_path / "backups").iterdir() if p.name[:1].isdigit())[-1]
    out = subprocess.run(["sqlite3", str(snap / "sqlite/tracker.db"), "SELECT count(*) FROM torrents"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1000"


def test_live_database_is_never_modified_by_a_backup(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=5000, wal=False)
    before = db.read_bytes()
    Cli(sqlite_config(tmp_path, db))("run", check=True)
    assert db.read_bytes() == before
    assert sys.executable  # the run used the same interpreter as the tests
