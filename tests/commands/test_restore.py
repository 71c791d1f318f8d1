"""`tracker-backup restore`: arguments, snapshot choice, lock, the one-line summary."""

from __future__ import annotations

import json
import os
import time

from conftest import Cli
from support.restore_kit import forge_artifact, latest_snapshot, make_tar, member
from support.tracker_db import open_copy
from tracker_backup.errors import EXIT_LOCKED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE
from tracker_backup.store import Store


def test_to_with_every_kind_is_a_usage_error(cli, tmp_path):
    cli("run", check=True)
    proc = cli("restore", "--to", str(tmp_path / "x"))
    assert proc.returncode == EXIT_USAGE and "--kind" in proc.stderr


def test_a_kind_the_snapshot_lacks_is_named_with_what_it_holds(cli):
    cli("run", check=True)
    proc = cli("restore", "--kind", "mysql", "--database", "x")
    assert proc.returncode == EXIT_USAGE
    assert "has no mysql backup (it holds: files, sqlite)" in proc.stderr


def test_unknown_snapshot_id_fails_without_touching_anything(cli, storage):
    cli("run", check=True)
    db = storage / "tracker/lib/database/tracker.db"
    inode = db.stat().st_ino
    proc = cli("restore", "20000101T000000Z")
    assert proc.returncode == EXIT_RUN_FAILED and "no snapshot '20000101T000000Z'" in proc.stderr
    assert db.stat().st_ino == inode


def test_restore_waits_for_no_one_and_exits_3_while_another_run_holds_the_lock(cli, tmp_path):
    cli("run", check=True)
    with Store(tmp_path / "backups").lock("test holding the lock"):
        proc = cli("restore", "--kind", "sqlite", "--to", str(tmp_path / "r.db"))
    assert proc.returncode == EXIT_LOCKED and "test holding the lock" in proc.stderr
    assert not (tmp_path / "r.db").exists()


def test_restore_holds_the_lock_while_it_reads_the_snapshot(cli, tmp_path, storage):
    """A prune (or run) started during a restore must wait: retention cannot delete the snapshot."""
    cli("run", check=True)
    db = storage / "tracker/lib/database/tracker.db"
    fifo = tmp_path / "stop.fifo"
    os.mkfifo(fifo)
    cfg = tmp_path / "slow.conf"
    cfg.write_text(cli.config.read_text().replace(
        f"database = {db}", f"database = {db}\nstop_command = cat {fifo}\nstart_command = true"))
    slow = Cli(cfg)
    child = slow.popen("restore", "--kind", "sqlite")
    try:
        # The restore is now blocked in stop_command, holding the lock.
        for _ in range(100):
            lock_text = (tmp_path / "backups/.lock").read_text()
            if "restore" in lock_text:
                break
            time.sleep(0.05)
        assert "'restore'" in lock_text
        assert cli("prune").returncode == EXIT_LOCKED
    finally:
        with open(fifo, "w") as fh:
            fh.write("go\n")
        out, err = child.communicate(timeout=60)
    assert child.returncode == EXIT_OK, err


def test_restore_latest_of_every_kind_ends_with_a_one_line_summary(cli, tmp_path, storage):
    snap_id = cli("run", check=True).stdout.strip()
    target_db = storage / "tracker/lib/database/tracker.db"
    proc = cli("restore", check=True)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"restored snapshot {snap_id} in ")
    assert f"sqlite -> {target_db}" in last and f"files -> {storage}" in last
    assert f"tracker-backup: INFO: restored snapshot {snap_id}" in proc.stderr
    conn = open_copy(target_db)
    try:
        assert conn.execute("SELECT count(*) FROM torrents").fetchone()[0] == 2000
    finally:
        conn.close()


def test_restore_latest_skips_a_snapshot_marked_failed(cli, tmp_path):
    older = cli("run", check=True).stdout.strip()
    newer = cli("run", check=True).stdout.strip()
    backups = tmp_path / "backups"
    assert latest_snapshot(backups).name == newer
    Store(backups).record_check(newer, {"kind": "verify", "result": "failed", "at": "x"})
    proc = cli("restore", "--kind", "sqlite", "--to", str(tmp_path / "r.db"), "--dry-run",
               check=True)
    assert proc.stdout.startswith(f"snapshot {older} ")


def test_dry_run_lists_row_counts_owner_and_mode(cli, tmp_path):
    cli("run", check=True)
    proc = cli("restore", "--kind", "sqlite", "--dry-run", check=True)
    manifest = json.loads((latest_snapshot(tmp_path / "backups") / "MANIFEST.json").read_text())
    counts = manifest["sources"]["sqlite"]["row_counts"]
    assert f"torrents {counts['torrents']}" in proc.stdout
    assert "owner 0:0 mode 0644" in proc.stdout


def test_every_kind_is_checked_before_any_is_restored(cli, tmp_path, storage):
    """A malicious files archive stops the restore before the SQLite database is touched."""
    cli("run", check=True)
    forge_artifact(latest_snapshot(tmp_path / "backups"), "files.tar.zst",
                   make_tar([member("../escape")]), members=1)
    db = storage / "tracker/lib/database/tracker.db"
    inode = db.stat().st_ino
    proc = cli("restore")
    assert proc.returncode == EXIT_RUN_FAILED and "contains '..'" in proc.stderr
    assert db.stat().st_ino == inode
    assert not [n for n in os.listdir(db.parent) if ".before-restore-" in n]
    assert not (storage.parent / "escape").exists()
