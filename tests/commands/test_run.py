"""`run`, `list`, `verify`, `status`: snapshot layout, manifest, permissions, lock, crash safety."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import time
from pathlib import Path

from conftest import Cli, write_config
from support.backup_dir import published
from support.polling import wait_for
from support.tracker_db import create_tracker_db
from tracker_backup.errors import EXIT_LOCKED, EXIT_OK, EXIT_RUN_FAILED


def test_run_publishes_a_complete_snapshot_with_manifest(cli, tmp_path, storage):
    proc = cli("run", check=True)
    snap_id = proc.stdout.strip()
    snap = tmp_path / "backups" / snap_id
    m = json.loads((snap / "MANIFEST.json").read_text())
    assert m["format"] == 1 and m["id"] == snap_id and m["sequence"] == 1
    assert m["agent_version"] and m["host"] and m["started"] <= m["finished"]
    assert set(m["sources"]) == {"sqlite", "files"}
    assert {a["path"] for a in m["artifacts"]} == {"sqlite/tracker.db.zst", "files.tar.zst"}
    for art in m["artifacts"]:
        assert (snap / art["path"]).stat().st_size == art["bytes"]
        assert len(art["sha256"]) == 64
    assert m["sources"]["sqlite"]["row_counts"]["torrents"] == 2000
    assert m["sources"]["sqlite"]["origin"] == str(storage / "tracker/lib/database/tracker.db")


def test_snapshot_files_are_0600_and_directories_0700_whatever_the_umask(cli, tmp_path):
    os.umask(0o000)
    try:
        cli("run", check=True)
    finally:
        os.umask(0o022)
    backups = tmp_path / "backups"
    for path in [backups, *backups.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:o}"


def test_snapshot_ids_are_utc_times_with_a_suffix_when_taken(cli, tmp_path):
    first = cli("run", check=True).stdout.strip()
    second = cli("run", check=True).stdout.strip()
    assert first != second
    assert len(first) == 16 and first.endswith("Z") and first[8] == "T"
    if first[:16] == second[:16]:
        assert second == f"{first}-1"


def test_list_shows_snapshots_newest_first_as_text_and_json(cli):
    ids = [cli("run", check=True).stdout.strip() for _ in range(2)]
    rows = json.loads(cli("list", "--json", check=True).stdout)
    assert [r["id"] for r in rows] == ids[::-1]
    assert rows[0]["sources"] == ["files", "sqlite"] and rows[0]["verification"] == "ok"
    assert rows[0]["bytes"] > 0
    lines = cli("list", check=True).stdout.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ids[::-1]
    assert lines[-1].startswith("total: ")  # the backup path's bytes, snapshots and stores


def test_verify_finds_and_names_a_flipped_bit(cli, tmp_path):
    snap_id = cli("run", check=True).stdout.strip()
    assert cli("verify", snap_id).returncode == EXIT_OK
    art = tmp_path / "backups" / snap_id / "sqlite/tracker.db.zst"
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x10
    art.write_bytes(bytes(data))
    proc = cli("verify", snap_id)
    assert proc.returncode == EXIT_RUN_FAILED
    assert f"{snap_id}: FAILED" in proc.stdout
    assert "sqlite/tracker.db.zst: sha256" in proc.stdout and "damaged" in proc.stdout
    rows = json.loads(cli("list", "--json").stdout)
    assert rows[0]["good"] is False and rows[0]["verification"].startswith("failed")


def test_verify_all_checks_database_content_not_only_hashes(cli, tmp_path):
    for _ in range(2):
        cli("run", check=True)
    proc = cli("verify", "--all", "--json", check=True)
    results = json.loads(proc.stdout)
    assert [r["result"] for r in results] == ["ok", "ok"]


def test_status_reports_last_run_and_last_success(cli, tmp_path):
    assert "last run:     never" in cli("status", check=True).stdout
    snap_id = cli("run", check=True).stdout.strip()
    data = json.loads(cli("status", "--json", check=True).stdout)
    assert data["last_run"]["result"] == "success" and data["last_run"]["snapshot"] == snap_id
    assert data["last_success"]["snapshot"] == snap_id
    assert 0 <= data["last_success_age_sec"] < 60
    assert data["snapshots"] == 1 and data["free_bytes"] > 0
    (tmp_path / "storage/tracker/lib/database/tracker.db").unlink()
    assert cli("run").returncode == EXIT_RUN_FAILED
    failed = cli("status", "--json")
    assert failed.returncode == EXIT_RUN_FAILED  # monitoring sees the failure in the exit status
    data = json.loads(failed.stdout)
    assert data["last_run"]["result"] == "failed" and "does not exist" in data["last_run"]["error"]
    assert data["last_success"]["snapshot"] == snap_id
    text = cli("status").stdout
    assert "last run:     failed" in text and "error:" in text


def test_second_run_while_the_lock_is_held_exits_3_naming_the_holder(cli, tmp_path):
    cli("run", check=True)
    lock = tmp_path / "backups/.lock"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, b"pid 4242 on testhost, 'run' since earlier\n" + b" " * 40, 0)
        proc = cli("run")
        assert proc.returncode == EXIT_LOCKED
        assert "pid 4242 on testhost" in proc.stderr
    finally:
        os.close(fd)
    assert cli("run").returncode == EXIT_OK


def _start_slow_run(tmp_path: Path, storage: Path):
    """Start a rate-limited run of a ~15 MB database; return once its copy is under way."""
    create_tracker_db(storage / "tracker/lib/database/big.db", rows=50_000, pad=200)
    conf = write_config(tmp_path / "slow.conf", f"""
[backup]
path = {tmp_path / "backups"}
rate_limit = 2
[sqlite]
database = {storage / "tracker/lib/database/big.db"}
""")
    cli = Cli(conf)
    proc = cli.popen("run")
    backups = tmp_path / "backups"
    wait_for(lambda: list(backups.glob(".staging-*/sqlite/*")), timeout=20, what="the copy to start",
             interval=0.05, proc=proc)
    return conf, cli, proc, backups


def test_sigkill_during_a_run_leaves_no_snapshot_and_the_next_run_cleans_up(tmp_path, storage):
    conf, cli, proc, backups = _start_slow_run(tmp_path, storage)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert published(backups) == []
    assert list(backups.glob(".staging-*"))  # debris, never mistaken for a snapshot
    assert json.loads(cli("list", "--json").stdout) == []
    conf.write_text(conf.read_text().replace("rate_limit = 2", "rate_limit = 0"))
    proc = cli("run")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "removed .staging-" in proc.stderr
    assert not list(backups.glob(".staging-*")) and len(published(backups)) == 1


def test_sigterm_stops_the_run_cleans_staging_and_releases_the_lock(tmp_path, storage):
    _conf, _cli, proc, backups = _start_slow_run(tmp_path, storage)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == EXIT_RUN_FAILED
    assert "SIGTERM" in err and "Traceback" not in err
    assert not list(backups.glob(".staging-*")) and published(backups) == []
    fd = os.open(backups / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the lock were still held
    os.close(fd)


def test_require_mountpoint_refuses_a_plain_directory(tmp_path, storage):
    (tmp_path / "backups").mkdir()
    conf = write_config(tmp_path / "m.conf", f"""
[backup]
path = {tmp_path / "backups"}
require_mountpoint = yes
[files]
root = {storage}
""")
    proc = Cli(conf)("run")
    assert proc.returncode == EXIT_RUN_FAILED
    assert "is not a mount point and require_mountpoint = yes" in proc.stderr
    assert list((tmp_path / "backups").iterdir()) == []


def test_manual_run_prunes_by_retention_but_no_prune_does_not(tmp_path, storage):
    conf = write_config(tmp_path / "r.conf", f"""
[backup]
path = {tmp_path / "backups"}
[retention]
keep_days = 0
keep_last = 2
[files]
root = {storage}
""")
    cli = Cli(conf)
    for _ in range(3):
        cli("run", "--no-prune", check=True)
    assert len(published(tmp_path / "backups")) == 3
    cli("run", check=True)
    assert len(published(tmp_path / "backups")) == 2


def test_prune_dry_run_explains_and_deletes_nothing_then_prune_deletes(tmp_path, storage):
    conf = write_config(tmp_path / "r.conf", f"""
[backup]
path = {tmp_path / "backups"}
[retention]
keep_days = 7
keep_last = 1
[files]
root = {storage}
""")
    cli = Cli(conf)
    ids = [cli("run", "--no-prune", check=True).stdout.strip() for _ in range(3)]
    # Age the two older snapshots by 30 days (the manifest is not an artifact: not hashed).
    for snap_id in ids[:2]:
        path = tmp_path / "backups" / snap_id / "MANIFEST.json"
        m = json.loads(path.read_text())
        m["started"] = "2026-01-01T00:00:00.000000Z"
        path.write_text(json.dumps(m))
    out = cli("prune", "--dry-run", check=True).stdout
    assert f"keep         {ids[2]}" in out and f"would delete {ids[0]}" in out
    assert len(published(tmp_path / "backups")) == 3
    out = cli("prune", check=True).stdout
    assert f"delete       {ids[1]}  (matched no keep rule)" in out
    assert [p.name for p in published(tmp_path / "backups")] == [ids[2]]


def test_python_dash_m_and_help_work(cli):
    proc = cli("--help")
    assert proc.returncode == 0 and "exit codes" in proc.stdout
    proc = cli("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
