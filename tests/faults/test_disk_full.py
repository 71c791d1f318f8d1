"""Disk full at the backup path, at each phase: a real small tmpfs, filled to the right level.

The phase a full disk hits is chosen by how much space is left: less than the
database copy (the SQLite copy fails), more than the copy but less than the
copy plus its compressed artifact (compression fails), enough for the database
but not the files archive. The manifest and status writes are a few hundred
bytes, too small to aim at with a filesystem, so there strace makes that one
write() fail with ENOSPC, exactly as a full disk would.
"""

from __future__ import annotations

import json

import pytest

from faults.harness import (
    SyscallTrap,
    assert_survived,
    db_state,
    fingerprints,
    leave_free,
    make_host,
    remount,
    start_slow_second_run,
    used_bytes,
    wait_for,
)

MB = 1_000_000
FULL = ("No space left on device", "database or disk is full")


def _host(tmp_path, tmpfs, **kw):
    backups = tmpfs(tmp_path / "backups")
    host = make_host(tmp_path, backups=backups, **kw)
    host.cli("run", check=True)
    return host


def _assert_failed_cleanly(host, proc, before, used_before, expect=FULL) -> None:
    assert proc.returncode == 1, proc.stderr
    assert any(e in proc.stderr for e in expect), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert {p.name for p in host.snapshots()} == set(before), "a failed run published"
    assert host.debris() == [], host.debris()
    assert used_bytes(host.backups) <= used_before, "the failed run left its files behind"
    status = json.loads((host.backups / ".state/status.json").read_text())
    assert status["last_run"]["result"] == "failed"


PHASES = {
    # phase: (host options, bytes left free, what the error must say)
    "sqlite copy": (dict(rows=1000, pad=4000), 1 * MB, FULL),
    "compression": (dict(rows=1000, pad=4000), 5 * MB, FULL),
    "files archive": (dict(big_file=4 * MB), int(1.5 * MB), FULL),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_disk_full_fails_run_frees_space_and_keeps_earlier_snapshots(tmp_path, tmpfs, phase):
    options, free, expect = PHASES[phase]
    host = _host(tmp_path, tmpfs, retention="keep_last = 1\nkeep_days = 0", **options)
    before, db_before = fingerprints(host), db_state(host.db)
    leave_free(host.backups, free)
    used = used_bytes(host.backups)
    proc = host.cli("run")
    _assert_failed_cleanly(host, proc, before, used, expect)
    # The message names where the space ran out: the backup path, not the tracker's disk.
    assert str(host.backups) in proc.stderr.splitlines()[-1], proc.stderr
    remount(host.backups, "size=64m")
    assert_survived(host, before, db_before)


INJECTED = {
    # name: (path in the staging dir, syscall, error)
    "manifest write": (lambda s, pid: s / f".MANIFEST.json.tmp-{pid}", "write", "ENOSPC"),
    "manifest fsync": (lambda s, pid: s / f".MANIFEST.json.tmp-{pid}", "fsync", "EIO"),
    "staging directory fsync": (lambda s, pid: s, "fsync", "EIO"),
    "publish rename": (lambda s, pid: s, "rename", "ENOSPC"),
}


@pytest.mark.parametrize("point", list(INJECTED))
def test_failed_write_or_fsync_at_publish_publishes_nothing(tmp_path, point):
    host, before, db_before, proc = start_slow_second_run(tmp_path)
    staging = wait_for(host.staging, what="the staging directory", proc=proc)
    target, syscall, error = INJECTED[point]
    trap = SyscallTrap(proc.pid, target(staging, proc.pid), syscall, action=f"error={error}")
    out, err = proc.communicate(timeout=120)
    trace = trap.close()
    assert "(INJECTED)" in trace, trace
    assert proc.returncode == 1, err
    assert "Traceback" not in err and ("No space left" in err or "Input/output error" in err), err
    assert {p.name for p in host.snapshots()} == set(before)
    assert host.debris() == []
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, db_before)


def test_disk_full_never_makes_retention_delete_good_snapshots(tmp_path, tmpfs):
    host = _host(tmp_path, tmpfs, rows=1000, pad=4000, retention="keep_last = 1\nkeep_days = 0")
    host.cli("run", "--no-prune", check=True)
    host.cli("run", "--no-prune", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    assert len(before) == 3
    leave_free(host.backups, 1 * MB)
    for _ in range(2):  # the same failure again and again: still nothing deleted
        proc = host.cli("run")
        assert proc.returncode == 1 and any(e in proc.stderr for e in FULL), proc.stderr
    assert fingerprints(host) == before
    remount(host.backups, "size=64m")
    assert_survived(host, before, db_before)
