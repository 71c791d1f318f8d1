"""SIGKILL during an in-place restore inside the maintenance window: the tracker is started again.

The restore uses the same window as a backup: a durable note before
stop_command, so the unit's ExecStopPost= (`window-recover`) or the next run
runs start_command. The agent is held inside the window by a process that
keeps the database open after stop_command (a tracker slow to exit): the
restore waits up to busy_timeout for it, and is killed there.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Cli, write_config
from support.polling import wait_for
from support.tracker_db import create_tracker_db


class Host:
    """A WAL database, a window whose commands log to a file, one snapshot taken."""

    def __init__(self, tmp: Path):
        self.db = create_tracker_db(tmp / "tracker.db", rows=2000, wal=True)
        self.log = tmp / "window.log"
        for name in ("stop", "start"):
            script = tmp / f"{name}.sh"
            script.write_text(f"#!/bin/sh\necho {name} >> {self.log}\n")
            script.chmod(0o755)
        self.start_sh = tmp / "start.sh"
        conf = write_config(tmp / "w.conf", f"""
[backup]
path = {tmp / "backups"}
[sqlite]
database = {self.db}
busy_timeout = 60s
stop_command = {tmp / "stop.sh"}
start_command = {self.start_sh}
""")
        self.cli = Cli(conf)
        self.journal = tmp / "backups/.state/maintenance-window.json"
        self.ready = tmp / "holder.ready"
        self.cli("run", check=True)  # WAL: the backup itself opens no window
        assert not self.log.exists()

    def events(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def kill_restore_inside_the_window(self) -> None:
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sqlite3, time, pathlib\n"
            f"c = sqlite3.connect({str(self.db)!r})\n"
            "c.execute('SELECT count(*) FROM torrents').fetchone()\n"
            f"pathlib.Path({str(self.ready)!r}).touch()\n"
            "time.sleep(120)\n")])
        try:
            wait_for(self.ready.exists, 20, "the holder's read transaction", interval=0.02, proc=holder)
            proc = self.cli.popen("restore", "--kind", "sqlite")
            # stop_command ran; the holder keeps it waiting
            wait_for(lambda: self.events() == ["stop"], 60, "the restore to wait inside the window",
                     interval=0.02, proc=proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            holder.kill()
            holder.wait()


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_sigkill_inside_a_restore_window_leaves_a_note_and_window_recover_starts_the_tracker(host):
    host.kill_restore_inside_the_window()
    assert host.events() == ["stop"], "the tracker was stopped and not started"
    note = json.loads(host.journal.read_text())
    assert note["start_command"] == [str(host.start_sh)]
    proc = host.cli("window-recover", check=True)
    assert "tracker started again" in proc.stdout
    assert host.events() == ["stop", "start"]
    assert not host.journal.exists()


def test_next_run_restarts_a_tracker_a_killed_restore_left_stopped(host):
    host.kill_restore_inside_the_window()
    proc = host.cli("run", check=True)
    assert "was killed before restarting it: running start_command now" in proc.stderr
    assert host.events() == ["stop", "start"]
    assert not host.journal.exists()


def test_completed_in_place_restore_closes_its_window(host):
    proc = host.cli("restore", "--kind", "sqlite", check=True)
    assert "restored snapshot" in proc.stdout
    assert host.events() == ["stop", "start"] and not host.journal.exists()
