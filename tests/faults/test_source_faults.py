"""Bad or changing sources: a corrupt database, a database replaced or deleted mid-copy, vanishing files."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tarfile

import pytest
import zstandard

from faults.harness import (
    assert_published_are_complete,
    assert_survived,
    db_state,
    file_size,
    fingerprints,
    make_host,
    open_files,
    start_slow_second_run,
    wait_for,
)
from support.tracker_db import create_tracker_db


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leaf_page(db, table: str) -> tuple[int, int]:
    """(page number, page size) of a b-tree leaf page of `table` (dbstat virtual table)."""
    conn = sqlite3.connect(db)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        page = conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' "
                            "ORDER BY pageno LIMIT 1 OFFSET 3", (table,)).fetchone()[0]
    finally:
        conn.close()
    return page, size


def _damage(db, how: str) -> None:
    if how == "b-tree page header":
        page, size = _leaf_page(db, "torrents")
        with open(db, "r+b") as fh:
            fh.seek((page - 1) * size)
            fh.write(b"\xff" * 12)  # invalid page type and cell count
    elif how == "index entries":
        page, size = _leaf_page(db, "sqlite_autoindex_torrents_1")
        with open(db, "r+b") as fh:  # cell contents only: the tree still parses
            fh.seek((page - 1) * size + size // 2)
            fh.write(os.urandom(64))
    elif how == "truncated file":
        os.truncate(db, os.path.getsize(db) // 2)


@pytest.mark.parametrize("how,level", [
    ("b-tree page header", "full"),
    ("b-tree page header", "quick"),
    ("index entries", "full"),
    ("truncated file", "full"),
])
def test_corrupt_source_database_fails_the_check_and_publishes_nothing(tmp_path, how, level):
    host = make_host(tmp_path, wal=False, backup=f"verify = {level}")
    host.cli("run", check=True)
    before = fingerprints(host)
    good = tmp_path / "good.db"
    good.write_bytes(host.db.read_bytes())
    _damage(host.db, how)
    damaged = _sha(host.db)
    proc = host.cli("run")
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    pragma = "integrity_check" if level == "full" else "quick_check"
    assert str(host.db) in last, last
    assert f"PRAGMA {pragma}" in last or "malformed" in last, last  # which check failed
    assert "Traceback" not in proc.stderr
    assert {p.name for p in host.snapshots()} == set(before), "a corrupt copy was published"
    assert host.debris() == []
    assert _sha(host.db) == damaged, "the agent changed the live database"
    status = json.loads((host.backups / ".state/status.json").read_text())
    assert status["last_run"]["result"] == "failed"
    host.db.write_bytes(good.read_bytes())  # the operator repairs the database
    assert_survived(host, before, db_state(host.db))


def _start_slow_copy(host):
    host.write_config(backup=f"path = {host.backups}\nrate_limit = 4")
    proc = host.start()
    wait_for(lambda: host.staging() and str(host.db) in open_files(proc.pid)
             and file_size(host.staging() / "sqlite/.tracker.db.copy") > 0,
             what="the SQLite copy", proc=proc)
    return proc


def _torrents(host, snap_id: str) -> int:
    return json.loads((host.backups / snap_id / "MANIFEST.json").read_text()
                      )["sources"]["sqlite"]["row_counts"]["torrents"]


def _remove_live(db) -> None:
    for suffix in ("", "-wal", "-shm"):
        (db.parent / (db.name + suffix)).unlink(missing_ok=True)


def test_database_replaced_during_copy_keeps_consistent_old_copy_and_warns(tmp_path):
    host = make_host(tmp_path, rows=3000, pad=4000)
    host.cli("run", check=True)
    before = fingerprints(host)
    new = create_tracker_db(tmp_path / "new.db", rows=500)
    proc = _start_slow_copy(host)
    _remove_live(host.db)  # what an operator restoring another file would do
    os.replace(new, host.db)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    snap = out.strip()
    assert "was replaced by another file while it was being copied" in err, err
    manifest = json.loads((host.backups / snap / "MANIFEST.json").read_text())
    assert manifest["sources"]["sqlite"]["origin_changed"] == "was replaced by another file"
    assert _torrents(host, snap) == 3000  # one consistent copy: the file as it was
    assert_published_are_complete(host)
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, None)  # the live database is now the new, smaller one
    newest = host.snapshots()[-1].name
    assert _torrents(host, newest) == 500  # the next run copies the new file


def test_database_deleted_during_copy_keeps_the_copy_then_next_run_says_it_is_missing(tmp_path):
    host = make_host(tmp_path, rows=3000, pad=4000)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    proc = _start_slow_copy(host)
    _remove_live(host.db)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    snap = out.strip()
    assert "was deleted while it was being copied" in err, err
    assert _torrents(host, snap) == 3000
    assert_published_are_complete(host)
    host.write_config(backup=f"path = {host.backups}")
    missing = host.cli("run")
    assert missing.returncode == 1
    assert f"database {host.db} does not exist" in missing.stderr, missing.stderr
    # The snapshot taken while it vanished is exactly what brings it back.
    restore = host.cli("restore", snap, "--kind", "sqlite", "--to", str(host.db))
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert db_state(host.db)["rows"] == 3000
    assert_survived(host, before, db_before)


@pytest.mark.parametrize("victim", ["not yet read", "being read"])
def test_file_vanishing_during_archive_is_left_out_and_the_run_succeeds(tmp_path, victim):
    host, before, db_before, proc = start_slow_second_run(tmp_path)
    big = host.storage / "caddy/etc/big.bin"
    wait_for(lambda: str(big) in open_files(proc.pid), what="reading big.bin", proc=proc)
    gone = big if victim == "being read" else host.storage / "tracker/etc/tracker.toml"
    gone.unlink()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rel = gone.relative_to(host.storage).as_posix()
    assert f"{rel} vanished" in err or f"{rel} changed while being read" in err, err
    archive = host.backups / out.strip() / "files.tar.zst"
    with open(archive, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as raw, \
            tarfile.open(fileobj=raw, mode="r|") as tar:
        names = [m.name for m in tar]
    assert rel not in names and "caddy/etc/Caddyfile" in names
    assert_published_are_complete(host)
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, db_before)
