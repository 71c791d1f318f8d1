"""For archive tests and benchmarks: a writer that logs its commits, the archiver as a real
process (SIGTERM/SIGKILL), restores through the library, and the exact-prefix check."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.polling import wait_for
from support.tracker_db import METRIC, create_tracker_db, info_hash
from support.writer_process import WriterProcess
from tracker_backup.engines.sqlite.archive import restore as pitr

ROOT = Path(__file__).resolve().parents[2]
ARCHIVER = ROOT / "tests" / "support" / "run_archiver.py"


@dataclass
class Commit:
    begin: float
    ack: float
    new: int  # number of the new torrent, -1 for an update


class LoggedWriter(WriterProcess):
    """tracker_writer.py with --commit-log: every committed transaction with its times."""

    def __init__(self, db: Path, workdir: Path, rate: float, existing: int, n: int,
                 user: str | None = None):
        self.log_path = workdir / f"commits{n}.log"
        super().__init__(db, workdir / f"writer{n}.json", rate, existing, user=user, start_timeout=20,
                         extra=["--commit-log", str(self.log_path), "--start-new", str(10**9 + n * 10**7)])

    def commits(self) -> list[Commit]:
        out = []
        for line in self.log_path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.append(Commit(float(parts[0]), float(parts[1]), int(parts[2])))
        return out


class ArchiverProc:
    """tests/support/run_archiver.py: the real Runner + SqliteArchiver in a child process."""

    def __init__(self, db: Path, backup: Path, log: Path, *extra: str, env: dict | None = None):
        self.log_path = log
        self.fh = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, str(ARCHIVER), str(db), str(backup), *extra],
                                     stdout=self.fh, stderr=self.fh, env=env)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        """Until the archiver's log says `text`; fails with the log if it exits first."""
        wait_for(lambda: text in self.log_path.read_text(), timeout, f"the archiver to log {text!r}",
                 interval=0.05, proc=self.proc, diagnose=self.log_path.read_text)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.fh.close()
        return self.proc.returncode

    def stop_after(self, writer: WriterProcess, settle: float = 1.0) -> dict:
        """Stop `writer`, give the archiver `settle` seconds to ship its last commits, stop the
        archiver (asserting a clean exit); the writer's final stats."""
        stats = writer.stop()
        time.sleep(settle)
        assert self.stop() == 0, self.log_path.read_text()
        return stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.fh.close()


def restore_at(backup: Path, at: float | None, dest: Path) -> dict:
    """Restore through the library and integrity-check the result."""
    plan = pitr.plan(backup, at)
    info = pitr.build(plan, dest)
    conn = sqlite3.connect(f"file:{dest}?mode=ro&immutable=1", uri=True)
    info["integrity"] = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    return info


def assert_latest_has_every_commit(backup: Path, dest: Path, commits: list[Commit],
                                   initial_metric: int) -> None:
    """Restore the latest point to `dest`: it holds exactly all of `commits`."""
    restore_at(backup, None, dest)
    assert applied_prefix(dest, commits, initial_metric) == len(commits)


def applied_prefix(db: Path, commits: list[Commit], initial_metric: int, *,
                   log_may_lag: bool = False) -> int:
    """How many of `commits` the database holds, asserting it is exactly that prefix.

    The metric counts committed transactions; the new torrents present must be
    exactly those among the first k commits, and sum(completed) == metric.
    `log_may_lag`: the writer was SIGKILLed, so its buffered log may lack its last
    commits (≤ 0.2 s of them): k may then exceed the commits it logged.
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    total = conn.execute("SELECT coalesce(sum(completed), 0) FROM torrents").fetchone()[0]
    metric = conn.execute("SELECT value FROM torrent_aggregate_metrics WHERE metric_name = ?",
                          (METRIC,)).fetchone()[0]
    k = metric - initial_metric
    assert total == metric, "invariant broken: sum(completed) != metric"
    assert k >= 0 and (log_may_lag or k <= len(commits)), (k, len(commits))
    news = [c.new for c in commits if c.new >= 0]
    inside = {c.new for c in commits[:k] if c.new >= 0}
    present = {n for n in news
               if conn.execute("SELECT 1 FROM torrents WHERE info_hash = ?", (info_hash(n),)).fetchone()}
    conn.close()
    assert present == inside, f"not a prefix: {len(present ^ inside)} new torrents differ"
    return k


# -- fixtures: `from support.archive_kit import procs_fixture, tracker_fixture` in a test module
@pytest.fixture(name="tracker")
def tracker_fixture(tmp_path):
    """(db path, initial metric): a WAL tracker DB with 5000 torrents."""
    (tmp_path / "db").mkdir()
    db = create_tracker_db(tmp_path / "db" / "tracker.db", rows=5000)
    conn = sqlite3.connect(db)
    metric = conn.execute("SELECT value FROM torrent_aggregate_metrics WHERE metric_name = ?",
                          (METRIC,)).fetchone()[0]
    conn.close()
    return db, metric


@pytest.fixture(name="procs")
def procs_fixture(tmp_path):
    """Factory for writers and archivers; everything still running is stopped after the test."""
    started: list = []

    class Factory:
        def writer(self, db, rate=300.0, existing=5000, user=None, workdir=None) -> LoggedWriter:
            w = LoggedWriter(db, workdir or tmp_path, rate, existing, len(started), user)
            started.append(w)
            return w

        def archiver(self, db, backup, *extra, env=None) -> ArchiverProc:
            a = ArchiverProc(db, backup, tmp_path / "archiver.log", *extra, env=env)
            started.append(a)
            return a

        def archiving(self, db, backup, *extra, env=None) -> ArchiverProc:
            """An archiver that has published its first base."""
            a = self.archiver(db, backup, *extra, env=env)
            a.wait_for("archive base")
            return a

    yield Factory()
    for p in reversed(started):
        if p.proc.poll() is None:
            p.kill()


