"""Point-in-time recovery of the compose `mysql` service from a dump plus the archived binlog.

Real everything: MariaDB in its container, the agent's dump through
`docker compose exec -T mysql`, the binlog archiver streaming through the
same prefix into the backup path while a tracker-style writer commits and
records when each commit was acknowledged, the container restarted while
archiving, and finally the data directory deleted (disk loss).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import threading
import time

import pytest

from support.deployment import BACKUP_USER, DATABASE
from support.mariadb import MysqlWriter
from tracker_backup import engines
from tracker_backup.archive.runner import Runner
from tracker_backup.config import load_config
from tracker_backup.engines.contract import RestoreContext
from tracker_backup.engines.mysql.binlog import pitr
from tracker_backup.engines.mysql.binlog.archiver import BinlogArchiver
from tracker_backup.engines.mysql.config import MysqlConfig

pytestmark = [pytest.mark.docker, pytest.mark.mysql]
TORRENTS = 20_000
RESTORE_USER = "tb_restore"


class Archiving:
    """The binlog archiver in a thread, as the `archive` service runs it."""

    def __init__(self, host):
        cfg = MysqlConfig(database=DATABASE, user=BACKUP_USER,
                          exec_prefix=tuple(host.dep.exec_prefix.split()))
        self.archiver = BinlogArchiver(cfg, host.backups, password=host.password)
        self.runner = Runner([self.archiver], notify=lambda **kw: True)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self) -> None:
        self.runner.stop.set()
        self.thread.join(timeout=60)
        assert self.error is None, self.error


@pytest.fixture
def env(host, monkeypatch):
    for key in ("DOCKER_HOST", "DOCKER_CONFIG"):
        monkeypatch.setenv(key, host.dep.engine.env[key])


def new_torrents(host, database: str) -> set[int]:
    """The writer's new torrents (numbered from 10**12, see mysql_writer.py) in `database`."""
    rows = host.dep.sql("SELECT info_hash FROM torrents", database)
    return {n for n in (int(r[0], 16) for r in rows) if n >= 10**12}


def restore_at(host, at: float | None, target: str):
    """What `restore --kind mysql --at AT --database TARGET` runs, through the engine's hook."""
    config = load_config(host.config)
    args = argparse.Namespace(database=target, mysql_user=RESTORE_USER,
                              mysql_password_file=host.restore_password_file)
    text = "latest" if at is None else pitr.format_time(at)
    step = engines.get("mysql").plan_restore_at(config, text, None, args)
    assert step.action.notes and "dump of snapshot" in step.action.notes[0]
    return step.run(RestoreContext("test"))


def wait_archived(archiving: Archiving, timeout: float = 30) -> None:
    """Until the archiver has published what the server had (bytes_behind 0, nothing pending)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = archiving.archiver.status()
        if st.pending == 0 and st.extra.get("last_commit_ts"):
            return
        time.sleep(0.2)
    raise AssertionError(f"archiver did not catch up: {archiving.archiver.status()}")


def test_pitr_to_a_second_holds_exactly_the_commits_up_to_it_across_a_container_restart(
        host, env, tmp_path):
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
    archiving.stop()
    committed = [tuple(map(float, line.split())) for line in acks.read_text().splitlines()]
    result = restore_at(host, target, "pitr_copy")
    got = new_torrents(host, "pitr_copy")
    must = {int(n) for n, begin, ack in committed if ack < target + 1 - 0.05}
    never = {int(n) for n, begin, ack in committed if begin >= target + 1 + 0.05}
    assert must and never
    assert must <= got, sorted(must - got)[:5]
    assert not (never & got), sorted(never & got)[:5]
    total, metric = host.dep.invariant("pitr_copy")
    assert total == metric
    assert result.row_counts["torrents"] >= TORRENTS and "CHECK TABLE ok" in result.reached

    # "latest" gives every commit the archiver saw, across the restart.
    latest = restore_at(host, None, "latest_copy")
    got = new_torrents(host, "latest_copy")
    assert {int(n) for n, _b, _a in committed} <= got
    assert latest.row_counts["torrents"] > result.row_counts["torrents"]
    host.dep.sql("DROP DATABASE pitr_copy; DROP DATABASE latest_copy")

    # The drill: a random second of the range into a scratch database, checked, dropped.
    drill = engines.get("mysql").archive_drill(load_config(host.config), tmp_path)
    assert drill is not None and "CHECK TABLE ok" in drill["summary"], drill
    assert drill["scratch_database"] not in host.dep.databases()
    report = engines.get("mysql").archive_report(load_config(host.config), [])
    assert report["oldest"] <= target <= report["newest"] and report["generations"]


def test_rpo_after_the_data_directory_is_deleted(host, env, tmp_path):
    acks = tmp_path / "acks.txt"
    writer = MysqlWriter(host.dep, DATABASE, tmp_path / "w.json", rate=100, existing=1000, acks=acks,
                         start_new=3 * 10**12)
    archiving = None
    try:
        host.agent("run", "--no-prune", check=True)
        archiving = Archiving(host)
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
    result = restore_at(host, None, DATABASE)
    got = new_torrents(host, DATABASE)
    must = {int(n) for n, _b, ack in committed if ack < loss - 1.0}
    assert must and must <= got, sorted(must - got)[:5]
    total, metric = host.dep.invariant(DATABASE)
    assert total == metric
    status = json.loads((host.backups / "archive/mysql/status.json").read_text())
    assert status["generation"] and "CHECK TABLE ok" in result.reached
