"""The agent on the host against the deployer's compose layout, on a real Docker engine.

The `mysql` service runs MariaDB from the locally built image with its data
bind-mounted at storage/mysql/data (uid 999 inside); the agent reaches it only
through `exec_prefix = docker compose -f .../docker-compose.yml exec -T mysql`.
The `tracker` service writes the SQLite database as uid 1000 the whole time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from support.deployment import DATABASE, TRACKER_UID
from support.mariadb import MysqlWriter
from support.proc_scan import ProcScanner

pytestmark = [pytest.mark.docker, pytest.mark.mysql]
TORRENTS = 300_000  # a dump of ~20 MB: long enough, under a rate limit, to act during it


def manifest(host, snap: str) -> dict:
    return json.loads((host.backups / snap / "MANIFEST.json").read_text())


def mysql_counts(host, database: str = DATABASE) -> dict[str, int]:
    rows = host.dep.sql("SELECT 'keys', COUNT(*) FROM `keys` UNION ALL SELECT 'torrents', COUNT(*) "
                        "FROM torrents UNION ALL SELECT 'whitelist', COUNT(*) FROM whitelist UNION "
                        "ALL SELECT 'torrent_aggregate_metrics', COUNT(*) FROM "
                        "torrent_aggregate_metrics", database)
    return {t: int(n) for t, n in rows}


@pytest.fixture(scope="module")
def mysql_writer(host, tmp_path_factory):
    """A tracker-style MySQL writer on the host, through the socket the test bind-mounts."""
    writer = MysqlWriter(host.dep, DATABASE, tmp_path_factory.mktemp("w") / "stats.json",
                         rate=100, existing=1000)
    yield writer
    writer.stop()


def test_dump_through_compose_exec_is_consistent_and_records_binlog_coordinates(host, mysql_writer):
    out = host.agent("run", "--no-prune", check=True)
    snap = out.stdout.strip().splitlines()[-1]
    src = manifest(host, snap)["sources"]["mysql"]
    assert src["exec_prefix"] == host.dep.exec_prefix.split()
    assert src["server_flavour"] == "mariadb" and src["client_tool"] == "mariadb-dump"
    assert src["binlog"]["file"].startswith("binlog.") and src["binlog"]["position"] > 0
    assert src["row_counts"]["torrents"] >= TORRENTS
    assert host.agent("verify", snap).returncode == 0
    assert mysql_writer.stats().get("errors", 0) == 0


def test_restore_into_another_database_and_drill_through_the_container(host, mysql_writer):
    snap = host.agent("run", "--no-prune", check=True).stdout.strip().splitlines()[-1]
    expected = manifest(host, snap)["sources"]["mysql"]["row_counts"]
    host.agent("restore", snap, "--kind", "mysql", "--database", "restored_copy",
               *host.restore_args(), check=True)
    assert mysql_counts(host, "restored_copy") == expected
    total, metric = host.dep.invariant("restored_copy")
    assert total == metric  # one consistent instant, though the writer never stopped
    drill = host.agent("drill", snap, check=True)
    assert "drill OK" in drill.stdout
    assert not [d for d in host.dep.databases() if d.startswith("tracker_backup_verify_")]
    host.dep.sql("DROP DATABASE restored_copy")


def _wait_for_process(name: str, arg: str, timeout: float = 60) -> None:
    """Until a process `name` with `arg` among its arguments runs (here or in a container)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        argv = fh.read().split(b"\0")
                    if os.path.basename(argv[0]) == name.encode() and arg.encode() in argv:
                        return
                except OSError:
                    pass
        time.sleep(0.05)
    raise AssertionError(f"no {name} process appeared within {timeout}s")


def test_stopping_the_mysql_service_during_a_dump_fails_cleanly_and_publishes_nothing(host):
    before = host.snapshots()
    host.write_config(backup="rate_limit = 1")  # MB/s: the ~20 MB dump takes ~20 s
    try:
        run = host.agent.popen("run", "--no-prune")
        _wait_for_process("mariadb-dump", "--single-transaction")  # the dump, not --version
        time.sleep(1.0)
        host.dep.compose("stop", "mysql")
        out, err = run.communicate(timeout=300)
    finally:
        host.write_config()
        host.dep.up("mysql")
    assert run.returncode == 1, (out, err)
    assert "mariadb-dump" in err, err
    assert host.snapshots() == before
    assert not [p for p in host.backups.iterdir() if p.name.startswith(".staging")]
    assert host.agent("run", "--no-prune").returncode == 0  # the next run is fine again


def test_password_is_in_no_process_argv_or_environment_on_the_host_or_in_the_container(host):
    scanner = ProcScanner(host.password, host.restore_password)
    scanner.start()
    try:
        host.write_config(backup="rate_limit = 5")  # a few seconds of dump to look at
        run = host.agent("run", "--no-prune", check=True)
        snap = run.stdout.strip().splitlines()[-1]
        restore = host.agent("restore", snap, "--kind", "mysql", "--database", "scan_copy",
                             *host.restore_args(), check=True)
    finally:
        scanner.stop()
        host.write_config()
    # The scan saw the tools at work (so it could have caught a leak)...
    assert {"mariadb-dump", "mariadb", "docker"} <= scanner.seen, sorted(scanner.seen)
    assert scanner.scans > 20
    # ... and the password nowhere: not in argv, not in any environment, not in the logs.
    assert scanner.leaks == []
    for text in (run.stdout, run.stderr, restore.stdout, restore.stderr, host.dep.engine.log_tail(10**7)):
        assert host.password not in text and host.restore_password not in text
    for path in host.backups.rglob("*.json"):
        assert host.password not in path.read_text()
    host.dep.sql("DROP DATABASE scan_copy")


def _writer_ops_grow(host, timeout: float = 30) -> dict:
    start = host.dep.writer()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = host.dep.writer()
        if now.get("ops", 0) > start.get("ops", 0) + 20:
            return now
        time.sleep(0.2)
    raise AssertionError(f"the tracker in its container stopped writing: {host.dep.writer()}")


def _owners(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_uid, p.stat().st_gid) for p in directory.iterdir()}


def test_sqlite_side_files_keep_uid_1000_across_the_container_boundary(host):
    db = host.dep.db
    assert host.agent("sqlite-wal", check=True).returncode == 0  # while the container writes
    _writer_ops_grow(host)
    host.agent("run", "--no-prune", check=True)  # WAL snapshot copy beside the live writer
    stats = _writer_ops_grow(host)
    owners = _owners(db.parent)
    assert {"tracker.db", "tracker.db-wal", "tracker.db-shm"} <= set(owners)
    assert all(o == (TRACKER_UID, TRACKER_UID) for n, o in owners.items() if n.startswith("tracker.db"))
    assert stats["errors"] == 0, stats["last_error"]

    # Restore in place with the tracker stopped: the new file and its later side files are 1000's.
    snap = host.snapshots()[-1]
    host.dep.compose("stop", "tracker")
    host.agent("restore", snap, "--kind", "sqlite", check=True)
    host.dep.up("tracker")
    stats = _writer_ops_grow(host)
    owners = _owners(db.parent)
    live = {n: o for n, o in owners.items() if n.startswith("tracker.db") and "before-restore" not in n}
    assert "tracker.db" in live and all(o == (TRACKER_UID, TRACKER_UID) for o in live.values()), owners
    assert stats["errors"] == 0, stats["last_error"]
