"""Maintenance-window journal: a run killed while the tracker is stopped never leaves it stopped."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from conftest import Cli, write_config
from support.polling import wait_for
from support.tracker_db import create_tracker_db


def _setup(tmp_path: Path) -> tuple[Cli, Path, Path]:
    db = create_tracker_db(tmp_path / "tracker.db", rows=30_000, wal=False, pad=100)
    log = tmp_path / "window.log"
    for name in ("stop", "start"):
        script = tmp_path / f"{name}.sh"
        script.write_text(f"#!/bin/sh\necho {name} >> {log}\n")
        script.chmod(0o755)
    conf = write_config(tmp_path / "w.conf", f"""
[backup]
path = {tmp_path / "backups"}
rate_limit = 1
[sqlite]
database = {db}
max_lock = 10ms
stop_command = {tmp_path / "stop.sh"}
start_command = {tmp_path / "start.sh"}
""")
    return Cli(conf), log, tmp_path / "backups/.state/maintenance-window.json"


def _kill_inside_window(cli: Cli, log: Path, journal: Path) -> None:
    proc = cli.popen("run")
    wait_for(lambda: log.exists() and journal.exists()
             and list((journal.parent.parent).glob(".staging-*/sqlite/*")),
             20, "the window to open", interval=0.02, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_inside_the_window_leaves_a_note_and_window_recover_starts_the_tracker(tmp_path):
    cli, log, journal = _setup(tmp_path)
    _kill_inside_window(cli, log, journal)
    assert log.read_text().split() == ["stop"], "the tracker was stopped and not started"
    note = json.loads(journal.read_text())
    assert note["start_command"] == [str(tmp_path / "start.sh")]
    proc = cli("window-recover", check=True)
    assert "tracker started again" in proc.stdout
    assert log.read_text().split() == ["stop", "start"]
    assert not journal.exists()
    assert "no maintenance window left open" in cli("window-recover", check=True).stdout
    assert log.read_text().split() == ["stop", "start"], "recovery must run start_command once"


def test_next_run_restarts_a_tracker_left_stopped_before_doing_anything_else(tmp_path):
    cli, log, journal = _setup(tmp_path)
    _kill_inside_window(cli, log, journal)
    proc = cli("run", check=True)
    assert "was killed before restarting it: running start_command now" in proc.stderr
    # recovery start, then this run's own window: stop, start
    assert log.read_text().split() == ["stop", "start", "stop", "start"]
    assert not journal.exists()


def test_completed_window_leaves_no_note(tmp_path):
    cli, log, journal = _setup(tmp_path)
    cli("run", check=True)
    assert log.read_text().split() == ["stop", "start"] and not journal.exists()
