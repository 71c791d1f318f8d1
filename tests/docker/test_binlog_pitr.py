"""Point-in-time recovery of the compose `mysql` service from a dump plus the archived binlog.

Real everything: MariaDB in its container, the agent's dump through
`docker compose exec -T mysql`, the binlog archiver streaming through the
same prefix into the backup path while a tracker-style writer commits and
records when each commit was acknowledged, the container restarted while
archiving, and finally the data directory deleted (disk loss).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time

import pytest

from support.deployment import DATABASE
from support.mariadb import MysqlWriter
from tracker_backup import engines
from tracker_backup.config import load_config
from tracker_backup.engines.mysql.binlog import pitr
from tracker_backup.store import Store

pytestmark = [pytest.mark.docker, pytest.mark.mysql]
TORRENTS = 20_000
RESTORE_USER = "tb_restore"
STARTED: list = []  # every archiver process a test started, stopped at teardown whatever happens


class Archiving:
    """`tracker-backup archive` (the archive service's command) with [mysql] continuous = yes."""

    def __init__(self, host):
        self.host = host
        host.write_config(mysql="continuous = yes")
        self.proc = host.agent.popen("archive")
        STARTED.append(self.proc)
        status = host.backups / "archive/mysql/status.json"
        deadline = time.monotonic() + 60
        while not status.exists():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the archiver did not report"
            time.sleep(0.2)

    def status(self) -> dict:
        return json.loads((self.host.backups / "archive/mysql/status.json").read_text())

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err
        assert self.host.password not in out + err
        return err


@pytest.fixture(autouse=True)
def _stop_archivers():
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=60)
            except Exception:  # noqa: BLE001 - last resort: never leave it running
                proc.kill()
                proc.communicate()


def assert_no_binlog_tool_left(host, within: float = 15.0) -> None:
    """No binlog tool process left in the mysql container within `within` seconds.

    `docker exec` does not end a process when its client goes away; the stream's
    prelude does (engines/mysql/binlog/stream.py). The server's dump thread itself
    goes at its next write to the closed connection (or when the next archiver
    connects with the same server_id), so it is not what this checks.
    """
    script = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
    deadline = time.monotonic() + within
    while True:
        out = host.dep.compose("exec", "-T", "mysql", "sh", "-c", script).stdout
        left = [line for line in out.splitlines() if line.startswith("mariadb-binlog")]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, left


def new_torrents(host, database: str) -> set[int]:
    """The writer's new torrents (numbered from 10**12, see mysql_writer.py) in `database`."""
    rows = host.dep.sql("SELECT info_hash FROM torrents", database)
    return {n for n in (int(r[0], 16) for r in rows) if n >= 10**12}


def restore_at(host, at: float | None, target: str) -> str:
    """`tracker-backup restore --kind mysql --at AT --database TARGET` as the restore account."""
    text = "latest" if at is None else pitr.format_time(at)
    out = host.agent("restore", "--kind", "mysql", "--at", text, "--database", target,
                     *host.restore_args(), check=True)
    assert "CHECK TABLE ok" in out.stdout, out.stdout
    return out.stdout


def wait_archived(archiving: Archiving, timeout: float = 60) -> None:
    """Until the archiver has published everything the server had (status.json says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = archiving.status()
        if st.get("streaming") and (st.get("lag_seconds") or 0) < 2.0 and st.get("bytes_behind") == 0 \
                and st.get("updated", 0) > time.time() - 6:
            return
        time.sleep(0.5)
    raise AssertionError(f"archiver did not catch up: {archiving.status()}")


def test_pitr_to_a_second_holds_exactly_the_commits_up_to_it_across_a_container_restart(
        host, tmp_path):
    acks = tmp_path / "acks.txt"
    writer = MysqlWriter(host.dep, DATABASE, tmp_path / "w.json", rate=100, existing=1000, acks=acks)
    try:
        host.agent("run", "--no-prune", check=True)
        archiving = Archiving(host)
        time.sleep(4)
        target = math.floor(time.time()) - 1  # a second well inside the archived stretch
        time.sleep(2)
        host.dep.compose("restart", "mysql")  # the server goes away while archiving
        host.dep.wait_mysql()
        writer.stop()
        writer = MysqlWriter(host.dep, DATABASE, tmp_path / "w2.json", rate=100, existing=1000,
                             acks=acks, start_new=2 * 10**12)
        time.sleep(3)
    finally:
        writer.stop()
    wait_archived(archiving)
    log = archiving.stop()
    assert "resuming from" in log  # the container restart was seen and ridden out
    committed = [tuple(map(float, line.split())) for line in acks.read_text().splitlines()]
    out = restore_at(host, target, "pitr_copy")
    got = new_torrents(host, "pitr_copy")
    must = {int(n) for n, begin, ack in committed if ack < target + 1 - 0.05}
    never = {int(n) for n, begin, ack in committed if begin >= target + 1 + 0.05}
    assert must and never
    assert must <= got, sorted(must - got)[:5]
    assert not (never & got), sorted(never & got)[:5]
    total, metric = host.dep.invariant("pitr_copy")
    assert total == metric
    assert f"{pitr.format_time(target)}" in out

    # "latest" gives every commit the archiver saw, across the restart.
    restore_at(host, None, "latest_copy")
    got = new_torrents(host, "latest_copy")
    assert {int(n) for n, _b, _a in committed} <= got
    host.dep.sql("DROP DATABASE pitr_copy; DROP DATABASE latest_copy")

    # The drill: a random second of the range into a scratch database, checked, dropped.
    drill = json.loads(host.agent("drill", "--json", check=True).stdout)
    arch = drill["details"]["mysql-archive"]
    assert "CHECK TABLE ok" in arch["summary"] and drill["result"] == "ok", drill
    assert arch["scratch_database"] not in host.dep.databases()
    status = json.loads(host.agent("status", "--json", check=True).stdout)
    report = status["archive"]["mysql"]
    assert report["oldest"] <= target <= report["newest"] and report["generations"]
    listing = host.agent("list", check=True).stdout
    assert "continuous archive: mysql: restorable" in listing

    # Retention keeps only the newest snapshot: the archive before its dump goes, the rest
    # still restores; a time before the kept dump is refused with the range.
    host.agent("run", "--no-prune", check=True)
    newest = host.snapshots()[-1]
    config = load_config(host.config)
    kept = [s for s in Store(host.backups).snapshots() if s.id == newest]
    lines = engines.get("mysql").archive_prune(config, kept, False)
    assert any("segment" in line for line in lines), lines
    restore_at(host, None, "after_prune")  # from the kept dump on
    host.dep.sql("DROP DATABASE after_prune")
    early = host.agent("restore", "--kind", "mysql", "--at", pitr.format_time(target), "--database",
                       "too_early", *host.restore_args())
    assert early.returncode == 1 and "restorable" in early.stderr, early.stderr


def test_purged_binlogs_are_reported_loudly_and_the_next_dump_becomes_the_new_base(host, tmp_path):
    host.agent("run", "--no-prune", check=True)
    archiving = Archiving(host)
    wait_archived(archiving, timeout=240)
    archiving.stop()
    old = archiving.status()["generation"]
    # A stopped archiver leaves no binlog tool behind in the container (one would hold a
    # dump thread on the server for ever, and keep the server from purging what it reads).
    assert_no_binlog_tool_left(host)
    # While no archiver runs, the server rotates and purges what the archive still needed.
    host.dep.sql(f"INSERT INTO torrents (info_hash) VALUES ('{4 * 10**12:040x}')", DATABASE)
    host.dep.purge_binlogs()
    archiving = Archiving(host)
    deadline = time.monotonic() + 60
    while not archiving.status().get("stalled") and time.monotonic() < deadline:
        time.sleep(0.5)
    stalled = archiving.status()["stalled"]
    if not stalled:  # say what the archiver did instead
        pytest.fail(f"not stalled: {archiving.status()}\n{archiving.stop()}")
    assert "no longer has" in stalled and "the next dump becomes the new base" in stalled, stalled
    status = json.loads(host.agent("status", "--json", check=True).stdout)
    assert any("stalled" in w for w in status["archive"]["mysql"]["warnings"])
    archiving.stop()
    # The next dump: the archiver starts a new generation from it.
    host.agent("run", "--no-prune", check=True)
    archiving = Archiving(host)
    wait_archived(archiving, timeout=120)
    st = archiving.status()
    log = archiving.stop()
    assert st["generation"] != old and not st.get("stalled")
    assert "new archive generation" in log and "gap" in log
    host.write_config()


def test_rpo_after_the_data_directory_is_deleted(host, tmp_path):
    acks = tmp_path / "acks.txt"
    writer = MysqlWriter(host.dep, DATABASE, tmp_path / "w.json", rate=100, existing=1000, acks=acks,
                         start_new=3 * 10**12)
    archiving = None
    try:
        host.agent("run", "--no-prune", check=True)
        archiving = Archiving(host)
        # Steady state first: the restores above wrote their loads into the server's binlog,
        # which the archiver streams too before it reaches the writer's newest commits.
        wait_archived(archiving, timeout=240)
        time.sleep(5)
        loss = time.time()
        host.dep.compose("kill", "mysql")  # disk loss: the server dies and its data is gone
    finally:
        writer.stop()
        if archiving is not None:
            archiving.stop()
    shutil.rmtree(host.dep.datadir)
    host.dep.datadir.mkdir()
    shutil.chown(host.dep.datadir, 999, 999)
    host.dep.up("mysql")  # a fresh, empty server on the same host
    host.dep.create_user(RESTORE_USER, host.restore_password, ["ALL ON *.*"])
    committed = [tuple(map(float, line.split())) for line in acks.read_text().splitlines()]
    restore_at(host, None, DATABASE)
    got = new_torrents(host, DATABASE)
    must = {int(n) for n, _b, ack in committed if ack < loss - 1.0}
    assert must and must <= got, sorted(must - got)[:5]
    total, metric = host.dep.invariant(DATABASE)
    assert total == metric
    host.write_config()
