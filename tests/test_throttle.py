"""Throttling: the agent lowers its own priority outside systemd, and the rate limiter's arithmetic."""

from __future__ import annotations

import time

import psutil

from conftest import Cli, write_config
from support.tracker_db import create_tracker_db
from tracker_backup.throttle import IONICE_LEVEL, NICE_LEVEL, RateLimiter


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_limiter_keeps_the_mean_rate_at_the_limit():
    clock = FakeClock()
    limiter = RateLimiter(1_000_000, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        limiter.consume(100_000)  # 10 MB in total at 1 MB/s
    assert 8.9 <= clock.now <= 10.1


def test_rate_limiter_zero_means_unlimited():
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock, sleep=clock.sleep)
    limiter.consume(10**12)
    assert clock.now == 0 and limiter.unlimited


def test_agent_lowers_its_cpu_and_io_priority_when_started_by_hand(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=30_000, pad=200)
    conf = write_config(tmp_path / "p.conf", f"""
[backup]
path = {tmp_path / "backups"}
rate_limit = 3
[sqlite]
database = {db}
""")
    proc = Cli(conf).popen("run")
    agent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 15
    seen = None
    while time.monotonic() < deadline and proc.poll() is None:
        if list((tmp_path / "backups").glob(".staging-*/sqlite/*")):
            seen = (agent.nice(), agent.ionice())
            break
        time.sleep(0.05)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert seen is not None, "never observed the running agent"
    nice, ionice = seen
    assert nice == NICE_LEVEL
    assert ionice.ioclass == psutil.IOPRIO_CLASS_BE and ionice.value == IONICE_LEVEL
