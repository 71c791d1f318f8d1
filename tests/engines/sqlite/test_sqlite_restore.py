"""SQLite restore: round trip under a live writer, in place over a stale WAL, refusal while
open, the maintenance window, original owner and mode, checksums first, dry run."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

from conftest import Cli, write_config
from support.restore_kit import latest_snapshot, leave_stale_wal
from support.tracker_db import info_hash, invariant, open_copy
from tracker_backup.errors import EXIT_OK, EXIT_RUN_FAILED

NOBODY = 65534
DB_REL = "tracker/lib/database/tracker.db"


def side_files(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir() if p.name.startswith(db.name))


def test_round_trip_under_a_live_writer_keeps_every_committed_row_and_the_invariant(
        cli, tmp_path, storage, start_writer):
    db = storage / DB_REL
    writer = start_writer(db, rate=300)
    committed_before = writer.stats()["last_new_committed"]
    snap_id = cli("run", check=True).stdout.strip()
    target = tmp_path / "restored.db"
    proc = cli("restore", snap_id, "--kind", "sqlite", "--to", str(target), check=True)
    writer.stop()
    assert f"restored snapshot {snap_id}" in proc.stdout
    manifest = json.loads((tmp_path / "backups" / snap_id / "MANIFEST.json").read_text())
    conn = open_copy(target)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        total, metric = invariant(conn)
        assert total == metric
        present = {r[0] for r in conn.execute(
            "SELECT info_hash FROM torrents WHERE info_hash >= ?", (info_hash(10**9),))}
        for n in range(10**9, committed_before + 1):
            assert info_hash(n) in present, f"row {n} committed before the run is missing"
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                  for t in manifest["sources"]["sqlite"]["row_counts"]}
    finally:
        conn.close()
    assert counts == manifest["sources"]["sqlite"]["row_counts"]


def test_in_place_restore_with_a_stale_wal_moves_it_aside_and_the_restored_db_is_intact(
        cli, tmp_path, storage):
    db = storage / DB_REL
    snap_id = cli("run", check=True).stdout.strip()
    leave_stale_wal(db, rows=3000)
    wal = Path(f"{db}-wal")
    assert wal.stat().st_size > 100_000, "the test needs committed frames in the -wal"
    proc = cli("restore", snap_id, "--kind", "sqlite", check=True)
    assert "previous kept as" in proc.stdout
    names = side_files(db)
    asides = [n for n in names if ".before-restore-" in n]
    assert any(n.endswith("-wal") for n in asides) and "tracker.db-wal" not in names
    # Open the restored database the normal way: a WAL left beside it would be applied now.
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM torrents").fetchone()[0] == 2000
        total, metric = invariant(conn)
        assert total == metric
    finally:
        conn.close()
    # The moved-aside set still opens together, with the rows only its WAL held.
    old = db.with_name(next(n for n in asides if not n.endswith(("-wal", "-shm"))))
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("SELECT count(*) FROM torrents").fetchone()[0] == 5000
    finally:
        conn.close()


def test_in_place_restore_is_refused_while_a_process_has_the_db_open_and_names_it(
        cli, tmp_path, storage, start_writer):
    db = storage / DB_REL
    cli("run", check=True)
    writer = start_writer(db, rate=100)
    inode = db.stat().st_ino
    proc = cli("restore", "--kind", "sqlite")
    assert proc.returncode == EXIT_RUN_FAILED
    assert f"pid {writer.proc.pid} (python" in proc.stderr
    assert "in use" in proc.stderr and "stop_command" in proc.stderr
    assert db.stat().st_ino == inode
    assert not [n for n in side_files(db) if ".before-restore-" in n]
    assert not [n for n in os.listdir(db.parent) if n.startswith(".tracker.db.restore-")]
    assert writer.stats()["errors"] == 0


def test_dry_run_names_the_holder_and_what_would_move_aside_and_changes_nothing(
        cli, storage, start_writer):
    db = storage / DB_REL
    cli("run", check=True)
    writer = start_writer(db, rate=50)
    before = side_files(db)
    proc = cli("restore", "--kind", "sqlite", "--dry-run")
    assert proc.returncode == EXIT_RUN_FAILED  # BLOCKED: the real restore would be refused
    assert "will replace: " + str(db) + " (moved aside" in proc.stdout
    assert f"BLOCKED: pid {writer.proc.pid}" in proc.stdout
    assert "dry run: nothing was changed" in proc.stdout
    assert side_files(db) == before


def _window_config(tmp_path: Path, storage: Path, stop: str, start: str) -> Path:
    return write_config(tmp_path / "window.conf", f"""
[backup]
path = {tmp_path / "backups"}
[sqlite]
database = {storage / DB_REL}
stop_command = {stop}
busy_timeout = 1s
start_command = {start}
""")


def test_maintenance_window_stops_the_writer_restores_and_always_starts_again(
        tmp_path, storage, start_writer):
    db = storage / DB_REL
    writer = start_writer(db, rate=100)
    started = tmp_path / "started"
    cfg = _window_config(tmp_path, storage, f"kill {writer.proc.pid}", f"touch {started}")
    cli = Cli(cfg)
    snap_id = cli("run", check=True).stdout.strip()
    proc = cli("restore", snap_id, check=True)
    assert started.exists(), "start_command did not run"
    assert writer.proc.wait(timeout=10) == 0
    assert "tracker was stopped for" in proc.stderr
    conn = open_copy(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_start_command_runs_even_when_the_restore_is_refused(tmp_path, storage, start_writer):
    db = storage / DB_REL
    writer = start_writer(db, rate=100)
    started = tmp_path / "started"
    cfg = _window_config(tmp_path, storage, "true", f"touch {started}")  # stops nothing
    cli = Cli(cfg)
    cli("run", check=True)
    proc = cli("restore", "--kind", "sqlite")
    assert proc.returncode == EXIT_RUN_FAILED
    assert f"pid {writer.proc.pid}" in proc.stderr
    assert started.exists()


def test_restored_database_gets_the_original_non_root_owner_and_mode(cli, storage):
    db = storage / DB_REL
    for p in [db, *db.parent.glob("tracker.db-*")]:
        os.chown(p, NOBODY, NOBODY)
        os.chmod(p, 0o640)
    cli("run", check=True)
    os.chown(db, 0, 0)
    os.chmod(db, 0o600)
    cli("restore", "--kind", "sqlite", check=True)
    st = db.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o640)


def test_damaged_snapshot_fails_its_checksums_and_nothing_is_touched(cli, tmp_path, storage):
    db = storage / DB_REL
    cli("run", check=True)
    snap = latest_snapshot(tmp_path / "backups")
    rel = next(a["path"] for a in json.loads((snap / "MANIFEST.json").read_text())["artifacts"]
               if a["source"] == "sqlite")  # the .db.zst, or a page snapshot's index
    art = snap / rel
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.write_bytes(bytes(data))
    inode = db.stat().st_ino
    proc = cli("restore", "--kind", "sqlite")
    assert proc.returncode == EXIT_RUN_FAILED
    assert "failed its checksums, nothing was restored" in proc.stderr
    assert f"{rel}: sha256" in proc.stderr
    assert db.stat().st_ino == inode
    assert not [n for n in side_files(db) if ".before-restore-" in n]


def test_restore_to_a_directory_uses_the_database_name(cli, tmp_path):
    cli("run", check=True)
    target = tmp_path / "elsewhere"
    target.mkdir()
    assert cli("restore", "--kind", "sqlite", "--to", str(target)).returncode == EXIT_OK
    assert (target / "tracker.db").is_file()


def test_on_a_new_host_the_missing_database_directory_is_created_for_the_tracker_user(
        cli, storage):
    db = storage / DB_REL
    os.chown(db, NOBODY, NOBODY)
    cli("run", check=True)
    shutil.rmtree(storage / "tracker/lib")
    proc = cli("restore", "--kind", "sqlite", check=True)
    assert f"creates directory {db.parent}" in proc.stdout
    for d in (storage / "tracker/lib", db.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    assert db.parent.stat().st_uid == NOBODY and db.stat().st_uid == NOBODY
    conn = open_copy(db)
    try:
        assert conn.execute("SELECT count(*) FROM torrents").fetchone()[0] == 2000
    finally:
        conn.close()


def test_a_second_restore_never_overwrites_what_the_first_moved_aside(cli, storage):
    db = storage / DB_REL
    cli("run", check=True)
    for _ in range(3):  # usually within one second: the same time stamp
        cli("restore", "--kind", "sqlite", check=True)
    asides = [n for n in side_files(db) if ".before-restore-" in n and not n.endswith(
        ("-wal", "-shm", "-journal"))]
    assert len(asides) == 3, asides
