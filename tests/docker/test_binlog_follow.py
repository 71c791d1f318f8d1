"""Following the binlog of the `mysql` service through `docker compose exec -T mysql`.

The follower (engines/mysql/binlog/follow.py) runs in this process against the
real server in its container, while a tracker-style writer commits on the
host side. Whatever happens in between (binlog rotations, more rotations than
one tool run can follow, the tool killed, the container restarted), the
entries it hands out must be exactly the server's binlog from the start
point: compared byte for byte with one uninterrupted read of the same range.
"""

from __future__ import annotations

import time

import pytest

from support.deployment import BACKUP_USER, DATABASE
from support.mariadb import MysqlWriter
from support.proc_scan import ProcScanner
from tracker_backup.engines.mysql.binlog import stream as stream_mod
from tracker_backup.engines.mysql.binlog.events import StreamParser
from tracker_backup.engines.mysql.binlog.follow import BinlogFollower
from tracker_backup.engines.mysql.client import MysqlClient
from tracker_backup.engines.mysql.config import MysqlConfig

pytestmark = [pytest.mark.docker, pytest.mark.mysql]


@pytest.fixture
def client(host, monkeypatch) -> MysqlClient:
    for key in ("DOCKER_HOST", "DOCKER_CONFIG"):
        monkeypatch.setenv(key, host.dep.engine.env[key])
    cfg = MysqlConfig(database=DATABASE, user=BACKUP_USER, exec_prefix=tuple(host.dep.exec_prefix.split()))
    return MysqlClient(cfg, host.password)


def master_status(host) -> tuple[str, int]:
    f, p = host.dep.sql("SHOW MASTER STATUS")[0][:2]
    return f, int(p)


def follow_until(follower: BinlogFollower, target: tuple[str, int], timeout: float = 90) -> list:
    entries = []
    deadline = time.monotonic() + timeout
    while (follower.file, follower.pos) != target:
        if time.monotonic() > deadline:
            raise AssertionError(f"follower at {follower.file}:{follower.pos}, server at {target}; "
                                 f"problem {follower.problem}, last error {follower.last_error}")
        entries += follower.poll(0.2)
    return entries


def reference_read(client: MysqlClient, start: tuple[str, int], end: tuple[str, int]) -> list[bytes]:
    """The transactions of [start, end) in one uninterrupted tool run."""
    tools = client.tools()
    stream = stream_mod.BinlogStream(client, tools, *start, server_id=stream_mod.archiver_server_id("ref"))
    try:
        parser: StreamParser = stream.parser
        out = []
        deadline = time.monotonic() + 60
        while (parser.file, parser.pos) != end and time.monotonic() < deadline:
            out += [i.data for i in stream.read(0.2) if hasattr(i, "data")]
        return out
    finally:
        stream.stop()


def test_follower_keeps_every_transaction_once_across_rotations_kills_and_a_container_restart(
        host, client, monkeypatch, tmp_path):
    monkeypatch.setattr(stream_mod, "SYMLINKS", 3)  # several tool restarts just from rotations
    tools = client.tools()
    start = master_status(host)
    writer = MysqlWriter(host.dep, DATABASE, tmp_path / "w.json", rate=150, existing=1000)
    follower = BinlogFollower(client, tools, stream_mod.archiver_server_id("test"), *start)
    entries = []
    scanner = ProcScanner(host.password)  # the binlog tool's password: never in argv or environ
    scanner.start()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            entries += follower.poll(0.1)
        for _ in range(5):  # more rotations than one tool run has output names for
            host.dep.sql("FLUSH BINARY LOGS")
            entries += follower.poll(0.3)
        while follower.stream is None:
            entries += follower.poll(0.1)
        follower.stream.child.kill()  # the tool dies (an archiver killed mid-stream)
        for _ in range(10):
            entries += follower.poll(0.2)
        host.dep.compose("restart", "mysql")  # the server goes away and comes back
        host.dep.wait_mysql()
        writer.stop()
        writer = MysqlWriter(host.dep, DATABASE, tmp_path / "w2.json", rate=150, existing=1000)
        time.sleep(2)
    finally:
        writer.stop()
    end = master_status(host)
    entries += follow_until(follower, end)
    follower.stop()
    scanner.stop()
    assert "mariadb-binlog" in scanner.seen and scanner.leaks == [], (sorted(scanner.seen), scanner.leaks)
    assert follower.restarts >= 1 and follower.runs >= 4, (follower.runs, follower.last_error)

    trx = [(m, d) for m, d in entries if m["kind"] == "trx"]
    files = [m["file"] for m, _ in entries if m["kind"] == "file"]
    assert len(files) == len(set(files)) >= 7  # each file's format description once
    for (a, _), (b, _) in zip(trx, trx[1:], strict=False):
        if a["file"] == b["file"]:
            assert b["pos"] == a["end"], (a, b)  # no gap, no overlap
        else:
            assert b["file"] > a["file"]
    gtids = [m["gtid"] for m, _ in trx]
    assert len(gtids) == len(set(gtids))
    monkeypatch.setattr(stream_mod, "SYMLINKS", 64)  # one tool run for the whole range
    assert [d for _, d in trx] == reference_read(client, start, end)  # byte for byte
    assert len(trx) > 500


def test_a_purged_binlog_is_a_permanent_loud_stop(host, client):
    old = master_status(host)
    host.dep.purge_binlogs()
    follower = BinlogFollower(client, client.tools(), stream_mod.archiver_server_id("purge"), *old)
    deadline = time.monotonic() + 60
    while follower.problem is None and time.monotonic() < deadline:
        follower.poll(0.2)
    follower.stop()
    assert follower.problem is not None and follower.problem[0] == "purged", follower.last_error
    assert "purged" in follower.problem[1]


def test_an_account_without_replication_slave_is_told_which_privilege(host, client):
    host.dep.create_user("no_repl", "pw-no-repl", [f"SELECT ON `{DATABASE}`.*"])
    weak = MysqlClient(MysqlConfig(database=DATABASE, user="no_repl",
                                   exec_prefix=client.cfg.exec_prefix), "pw-no-repl")
    follower = BinlogFollower(weak, client.tools(), stream_mod.archiver_server_id("weak"),
                              *master_status(host))
    deadline = time.monotonic() + 30
    while follower.problem is None and time.monotonic() < deadline:
        follower.poll(0.2)
    follower.stop()
    assert follower.problem is not None and follower.problem[0] == "denied", follower.last_error
    assert "REPLICATION SLAVE" in follower.problem[1]
