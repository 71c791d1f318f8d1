"""SIGTERM (what `systemctl stop` sends): stop promptly, clean up, release the lock, restart the tracker.

"Promptly" is checked against the length of the phase the signal interrupts:
the rate limit makes the copy last well over a minute, and the agent must be
gone long before that (a correctness bound, not a performance measurement).
"""

from __future__ import annotations

import json
import signal
import subprocess

from faults.harness import (
    assert_lock_free,
    assert_survived,
    db_state,
    file_size,
    fingerprints,
    make_host,
    open_files,
    wait_for,
)

STOP_WITHIN = 20  # seconds; the interrupted copy alone would take > 60 s


def _terminate(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=STOP_WITHIN)
    return proc.returncode, err


def _assert_clean_failure(host, code: int, err: str) -> None:
    assert code == 1, f"exit {code}: {err}"
    assert "SIGTERM" in err, err
    assert "Traceback" not in err, err
    assert host.debris() == [], f"staging left behind: {host.debris()}"
    assert_lock_free(host)
    status = json.loads((host.backups / ".state/status.json").read_text())
    assert status["last_run"]["result"] == "failed"
    assert "SIGTERM" in status["last_run"]["error"]


def test_sigterm_during_sqlite_copy_stops_cleans_staging_and_releases_lock(tmp_path, start_writer):
    host = make_host(tmp_path, rows=3000, pad=4000)  # ~12 MB
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    writer = start_writer(host.db, rate=200, existing=3000)
    host.write_config(backup=f"path = {host.backups}\nrate_limit = 0.15")
    proc = host.start()
    wait_for(lambda: host.staging() and str(host.db) in open_files(proc.pid)
             and file_size(host.staging() / "sqlite/.tracker.db.copy") > 0,
             what="the SQLite copy", proc=proc)
    code, err = _terminate(proc)
    _assert_clean_failure(host, code, err)
    assert writer.stop()["errors"] == 0
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, db_before)


def test_sigterm_during_files_archive_stops_and_cleans_staging(tmp_path):
    host = make_host(tmp_path, big_file=12_000_000)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    host.write_config(backup=f"path = {host.backups}\nrate_limit = 0.15")
    proc = host.start()
    wait_for(lambda: host.staging() and file_size(host.staging() / "files.tar.zst") >= 0,
             what="the files archive", proc=proc)
    code, err = _terminate(proc)
    _assert_clean_failure(host, code, err)
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, db_before)


# -- maintenance window: the tracker must be started again whatever happens -------------------

def _window_host(tmp_path, stop_sleep: float = 0, start_sleep: float = 0):
    """Rollback-journal DB, max_lock = 0 (always the window), scripts that log what they did.

    The scripts sleep only while the file `slow` exists, so the baseline run and
    the run after the fault are quick.
    """
    slow = tmp_path / "slow"
    events = tmp_path / "tracker-events.log"
    marker = tmp_path / "tracker-stopped"
    stop = tmp_path / "stop-tracker.sh"
    start = tmp_path / "start-tracker.sh"
    stop.write_text(f"#!/bin/sh\necho stop >> {events}\ntouch {marker}\n"
                    f"[ -e {slow} ] && sleep {stop_sleep}\n"
                    f"echo stopped >> {events}\n")
    start.write_text(f"#!/bin/sh\necho start >> {events}\n[ -e {slow} ] && sleep {start_sleep}\n"
                     f"rm -f {marker}\n"
                     f"echo started >> {events}\n")
    stop.chmod(0o755)
    start.chmod(0o755)
    host = make_host(tmp_path, rows=3000, pad=4000, wal=False,
                     sqlite=f"max_lock = 0s\nstop_command = {stop}\nstart_command = {start}")
    host.cli("run", check=True)
    events.write_text("")
    slow.touch()
    return host, events, marker


def _events(path) -> list[str]:
    return path.read_text().split()


def test_sigterm_during_maintenance_window_copy_still_runs_start_command(tmp_path):
    host, events, marker = _window_host(tmp_path)
    before, db_before = fingerprints(host), db_state(host.db)
    host.write_config(backup=f"path = {host.backups}\nrate_limit = 0.15")
    proc = host.start()
    wait_for(lambda: host.staging() and file_size(host.staging() / "sqlite/.tracker.db.copy") > 0,
             what="the copy inside the window", proc=proc)
    assert marker.exists()
    code, err = _terminate(proc)
    _assert_clean_failure(host, code, err)
    assert _events(events) == ["stop", "stopped", "start", "started"]
    assert not marker.exists(), "the tracker was left stopped"
    (tmp_path / "slow").unlink()
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, db_before)


def test_sigterm_while_stop_command_runs_still_runs_start_command(tmp_path):
    host, events, marker = _window_host(tmp_path, stop_sleep=30)
    before, db_before = fingerprints(host), db_state(host.db)
    proc = host.start()
    wait_for(lambda: _events(events) == ["stop"], what="stop_command", proc=proc)
    code, err = _terminate(proc)
    _assert_clean_failure(host, code, err)
    assert _events(events)[-2:] == ["start", "started"], _events(events)
    assert not marker.exists(), "the tracker was left stopped"
    (tmp_path / "slow").unlink()
    assert_survived(host, before, db_before)


def test_second_sigterm_does_not_cut_start_command_short(tmp_path):
    host, events, marker = _window_host(tmp_path, start_sleep=2)
    before, db_before = fingerprints(host), db_state(host.db)
    host.write_config(backup=f"path = {host.backups}\nrate_limit = 0.15")
    proc = host.start()
    wait_for(lambda: host.staging() and file_size(host.staging() / "sqlite/.tracker.db.copy") > 0,
             what="the copy inside the window", proc=proc)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "start" in _events(events), what="start_command", proc=proc)
    proc.send_signal(signal.SIGTERM)  # an impatient operator, or a second `systemctl stop`
    _out, err = proc.communicate(timeout=STOP_WITHIN)
    _assert_clean_failure(host, proc.returncode, err)
    assert _events(events) == ["stop", "stopped", "start", "started"]
    assert not marker.exists(), "the tracker was left stopped"
    (tmp_path / "slow").unlink()
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, db_before)
