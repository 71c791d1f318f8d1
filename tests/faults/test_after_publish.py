"""Failures after the snapshot is published (status write, retention): the snapshot stays, and says so."""

from __future__ import annotations

import json
import signal
import time

import psutil

from faults.harness import (
    SyscallTrap,
    assert_survived,
    db_state,
    fingerprints,
    make_host,
    start_slow_second_run,
    trap_command,
    wait_for,
)


def test_status_write_failing_after_publish_reports_the_published_snapshot(tmp_path):
    host, before, db_before, proc = start_slow_second_run(tmp_path)
    staging = wait_for(host.staging, what="the staging directory", proc=proc)
    trap = SyscallTrap(proc.pid, host.backups / f".state/.status.json.tmp-{proc.pid}", "write",
                       action="error=ENOSPC")
    _out, err = proc.communicate(timeout=120)
    assert "(INJECTED)" in trap.close()
    assert proc.returncode == 1, err
    new = staging.name.removeprefix(".staging-")
    assert (host.backups / new / "MANIFEST.json").is_file()
    last = err.strip().splitlines()[-1]
    assert f"snapshot {new} was published" in last and "No space left" in last, last
    assert "nothing published" not in err
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, db_before)


def test_retention_failing_after_publish_keeps_new_snapshot_and_says_it_was_published(tmp_path):
    host = make_host(tmp_path, retention="keep_last = 1\nkeep_days = 0")
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    (old,) = before
    proc = host.start("run", prefix=trap_command(host.backups / f".deleting-{old}", "unlinkat",
                                                 action="error=EIO"))
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    new = {p.name for p in host.snapshots()} - {old}
    assert len(new) == 1, new
    (new_id,) = new
    last = err.strip().splitlines()[-1]
    assert f"snapshot {new_id} was published" in last and "Input/output error" in last, last
    status = json.loads((host.backups / ".state/status.json").read_text())
    assert status["last_success"]["snapshot"] == new_id
    assert status["last_run"]["snapshot"] == new_id
    assert_survived(host, before, db_before, may_delete={old})


RENAMES = ("82", "264", "316")  # rename, renameat, renameat2 (x86_64)


def _held_in(pid: int, numbers: tuple[str, ...]) -> bool:
    """True while the process sits in one of these syscalls (x86_64 numbers)."""
    try:
        with open(f"/proc/{pid}/syscall") as fh:
            return fh.read().split()[0] in numbers
    except (OSError, IndexError):
        return False


def test_sigterm_during_retention_reports_the_published_snapshot_and_cleans_up(tmp_path):
    host = make_host(tmp_path, retention="keep_last = 1\nkeep_days = 0")
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    (old,) = before
    # Hold the agent for a moment at the rename that hides the old snapshot, then stop it.
    proc = host.start("run", prefix=trap_command(host.backups / old, "rename,renameat,renameat2",
                                                 action="delay_enter=2000000"))
    # Held in a rename for 0.3 s: the trapped one (2 s), not a passing rename of the run's own
    # files (state, staging), which a loaded host can catch mid-call (CI, once).
    agent = wait_for(lambda: next((c for c in psutil.Process(proc.pid).children()
                                   if _held_in(c.pid, RENAMES) and not time.sleep(0.3)
                                   and _held_in(c.pid, RENAMES)), None),
                     what="retention's rename", proc=proc)
    agent.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert "was published, but then: stopped by SIGTERM" in last, last
    new = {p.name for p in host.snapshots()} - {old}
    assert len(new) == 1
    assert_survived(host, before, db_before, may_delete={old})


def test_sigterm_right_after_the_publish_rename_reports_the_snapshot_as_published(tmp_path):
    host, before, db_before, proc = start_slow_second_run(tmp_path)
    staging = wait_for(host.staging, what="the staging directory", proc=proc)
    # The first open of the backup path after the sources is publish()'s directory fsync,
    # just after the rename: hold it there and send SIGTERM.
    trap = SyscallTrap(proc.pid, host.backups, "open,openat", action="delay_enter=2000000")
    wait_for(lambda: _held_in(proc.pid, ("2", "257")) and not staging.exists(),
             what="publish's directory fsync", proc=proc)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    trap.close()
    assert proc.returncode == 1, err
    new = staging.name.removeprefix(".staging-")
    last = err.strip().splitlines()[-1]
    assert f"snapshot {new} was published, but then: stopped by SIGTERM" in last, last
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, db_before)
