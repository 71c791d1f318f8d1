"""SIGKILL of the agent at every phase of a run: nothing half-done is ever a snapshot.

Each test finds its phase from outside (files appearing in the staging
directory, the agent's open descriptors in /proc, or an strace trap on the
first system call of the phase), kills the agent with SIGKILL, and then checks
the common promise (harness.assert_survived).
"""

from __future__ import annotations

import json
import os

import pytest

from faults.harness import (
    OPENS,
    RENAMES,
    SyscallTrap,
    assert_survived,
    db_state,
    file_size,
    fingerprints,
    kill,
    make_host,
    open_files,
    trap_command,
    wait_for,
)

KILLED = (-9, 128 + 9)  # the agent itself, or strace re-raising the tracee's SIGKILL


def slow(host, **extra: str) -> None:
    """Keep the backup path, add settings that stretch the run (rate limit etc.)."""
    lines = "\n".join(f"{k} = {v}" for k, v in extra.items())
    host.write_config(backup=f"path = {host.backups}\n{lines}")


def assert_killed_unpublished(host, proc, before) -> None:
    code, _out, _err = kill(proc) if proc.poll() is None else (proc.wait(), "", "")
    assert code in KILLED, f"agent was not killed by the fault: exit {code}"
    assert {p.name for p in host.snapshots()} == set(before), "a killed run published something"
    assert host.debris(), "the kill should have left a staging directory behind"


# -- the sources --------------------------------------------------------------------------------

def test_sigkill_during_sqlite_copy_under_live_writer_publishes_nothing(tmp_path, start_writer):
    host = make_host(tmp_path, rows=3000, pad=4000)  # ~12 MB database
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    writer = start_writer(host.db, rate=200, existing=3000)
    slow(host, rate_limit="4")  # 3 MB/s-ish: the copy lasts ~3 s
    proc = host.start()
    wait_for(lambda: host.staging() and file_size(host.staging() / "sqlite/.tracker.db.copy") > 0
             and str(host.db) in open_files(proc.pid), what="the SQLite copy", proc=proc)
    assert_killed_unpublished(host, proc, before)
    stats = writer.stop()
    assert stats["errors"] == 0, stats  # the tracker never noticed the crash
    slow(host)
    assert_survived(host, before, db_before)


def test_sigkill_during_sqlite_integrity_check_publishes_nothing(tmp_path):
    # Many small rows: integrity_check (which runs while the copy is compressed, in
    # parallel) lasts long enough to be caught.
    host = make_host(tmp_path, rows=150_000, pad=0)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    proc = host.start()

    def checking():
        staging = host.staging()
        if not staging:
            return False
        copy = str(staging / "sqlite/.tracker.db.copy")
        files = open_files(proc.pid)
        # The check (and the compressor) read the finished copy; the live database is closed.
        return files.get(copy) == os.O_RDONLY and str(host.db) not in files \
            and (staging / "sqlite/tracker.db.zst").exists()

    wait_for(checking, what="the integrity check of the copy", proc=proc, interval=0)
    assert_killed_unpublished(host, proc, before)
    assert_survived(host, before, db_before)


def test_sigkill_during_compression_publishes_nothing(tmp_path):
    host = make_host(tmp_path, rows=3000, pad=4000)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    slow(host, compression_level="19")  # ~1 s to compress 12 MB: a window to hit
    proc = host.start()
    wait_for(lambda: host.staging() and file_size(host.staging() / "sqlite/tracker.db.zst") >= 0
             and (host.staging() / "sqlite/.tracker.db.copy").exists(),
             what="compression of the copy", proc=proc)
    assert_killed_unpublished(host, proc, before)
    slow(host)
    assert_survived(host, before, db_before)


def test_sigkill_during_files_archive_publishes_nothing(tmp_path):
    host = make_host(tmp_path, big_file=6_000_000)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    slow(host, rate_limit="3")
    proc = host.start()
    wait_for(lambda: host.staging() and file_size(host.staging() / "files.tar.zst") >= 0,
             what="the files archive", proc=proc)
    assert_killed_unpublished(host, proc, before)
    slow(host)
    assert_survived(host, before, db_before)


# -- verification, manifest, publish, state: strace traps at the phase's first syscall ----------

def _staging_trap(host, target, syscalls: str, when: int = 1):
    """Start a slowed run, arm a trap on `target(staging, pid)` while the archive is read."""
    slow(host, rate_limit="3")
    proc = host.start()
    staging = wait_for(host.staging, what="the staging directory", proc=proc)
    trap = SyscallTrap(proc.pid, target(staging, proc.pid), syscalls, when=when)
    proc.wait(timeout=120)
    return proc, trap.close()


STAGING_TRAPS = {
    # name: (path of the trapped syscall, syscalls, occurrence, published?)
    "manifest write (before writing)": (lambda s, p: s / f".MANIFEST.json.tmp-{p}", OPENS, 1, False),
    "manifest write (written, before its rename)": (
        lambda s, p: s / f".MANIFEST.json.tmp-{p}", RENAMES, 1, False),
    "publish (manifest in place, before the rename)": (lambda s, p: s, RENAMES, 1, False),
    "publish (renamed, before the directory fsync)": (lambda s, p: s.parent, OPENS, 1, True),
    "status record after publish": (
        lambda s, p: s.parent / f".state/.status.json.tmp-{p}", OPENS, 1, True),
}


@pytest.mark.parametrize("phase", list(STAGING_TRAPS))
def test_sigkill_at_verify_manifest_and_publish_leaves_all_or_nothing(tmp_path, phase):
    host = make_host(tmp_path, big_file=6_000_000)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    target, syscalls, when, published = STAGING_TRAPS[phase]
    proc, trace = _staging_trap(host, target, syscalls, when)
    assert proc.returncode in KILLED, f"trap did not fire ({phase}): {proc.returncode}\n{trace}"
    assert "killed by SIGKILL" in trace, trace
    new = {p.name for p in host.snapshots()} - set(before)
    if published:
        # The rename is the commit point: after it the snapshot is complete.
        assert len(new) == 1, new
    else:
        assert not new, f"{phase}: a killed run published {new}"
    slow(host)
    assert_survived(host, before, db_before)


# -- retention ---------------------------------------------------------------------------------

RETENTION_TRAPS = {
    "before hiding the snapshot": (lambda b, old: b / old, RENAMES, 1),
    "hidden, before deleting": (lambda b, old: b / f".deleting-{old}", OPENS, 1),
    "halfway through deleting": (lambda b, old: b / f".deleting-{old}", "unlinkat", 2),
}


@pytest.mark.parametrize("moment", list(RETENTION_TRAPS))
def test_sigkill_during_retention_never_damages_a_kept_snapshot(tmp_path, moment):
    host = make_host(tmp_path, retention="keep_last = 2\nkeep_days = 0")
    for _ in range(2):
        host.cli("run", "--no-prune", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    oldest = sorted(before)[0]
    assert host.cli("verify", oldest).returncode == 0  # leaves a check record in .state
    record = json.loads((host.backups / ".state/checks.json").read_text())[oldest]["at"]
    target, syscalls, when = RETENTION_TRAPS[moment]
    proc = host.start("run", prefix=trap_command(target(host.backups, oldest), syscalls, when=when))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in KILLED, f"trap did not fire ({moment}): {proc.returncode}\n{err}"
    new = {p.name for p in host.snapshots()} - set(before)
    assert len(new) == 1, "the run published before retention started"
    # Only snapshots retention chose may go; a half-deleted one is hidden, never listed.
    listed = host.cli("list", "--json")
    assert listed.returncode == 0
    if moment != "before hiding the snapshot":  # the next run clears the hidden one's record
        assert host.cli("run", "--no-prune").returncode == 0
        checks = json.loads((host.backups / ".state/checks.json").read_text())
        assert all(c.get("at") != record for c in checks.values()), checks
    assert_survived(host, before, db_before, may_delete={oldest})
    prune = host.cli("prune")
    assert prune.returncode == 0, prune.stderr
    # The first snapshot is gone (runs in one second may reuse its name: compare sequences),
    # and its verify record did not outlive it to decorate a newer snapshot of the same name.
    seqs = {json.loads((p / "MANIFEST.json").read_text())["sequence"] for p in host.snapshots()}
    assert 1 not in seqs, seqs
    checks = json.loads((host.backups / ".state/checks.json").read_text())
    for snap_id, check in checks.items():
        assert (host.backups / snap_id).is_dir(), f"check record of deleted {snap_id} left"
        assert check["at"] != record, f"the deleted snapshot's record now decorates {snap_id}"


@pytest.mark.parametrize("command,scratch", [(("verify", "--all"), ".staging-verify-*"),
                                             (("drill",), ".staging-drill-*")])
def test_sigkill_during_verify_or_drill_leaves_snapshots_intact_and_scratch_is_cleaned(
        tmp_path, command, scratch):
    host = make_host(tmp_path, rows=3000, pad=4000)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    proc = host.start(*command)
    wait_for(lambda: [p for p in host.backups.glob(scratch) if any(p.rglob("*"))],
             what=f"{command[0]}'s scratch copy", proc=proc)
    code, _out, _err = kill(proc)
    assert code == -9
    assert host.debris(), "the scratch directory should be left by the kill"
    assert fingerprints(host) == before
    assert_survived(host, before, db_before)  # the next run removes the scratch debris


def test_sigkill_during_locked_rollback_copy_releases_the_lock_and_the_tracker_loses_no_write(
        tmp_path, start_writer):
    # Rollback journal: the copy holds a SHARED lock that blocks the tracker's writes (within
    # max_lock). A crash must hand the database straight back: the kernel drops the lock.
    host = make_host(tmp_path, rows=1000, pad=4000, wal=False, sqlite="max_lock = 30s")
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    writer = start_writer(host.db, rate=100, existing=1000)
    slow(host, rate_limit="0.5")  # ~8 s under the lock if left alone
    proc = host.start()
    wait_for(lambda: host.staging() and str(host.db) in open_files(proc.pid)
             and file_size(host.staging() / "sqlite/.tracker.db.copy") > 0,
             what="the locked copy", proc=proc)
    stalled = writer.stats()["ops"]
    assert_killed_unpublished(host, proc, before)
    wait_for(lambda: writer.stats()["ops"] > stalled + 20, timeout=10,
             what="the tracker's writes to resume")
    stats = writer.stop()
    assert stats["errors"] == 0, stats  # blocked for a moment, never failed
    slow(host)
    assert_survived(host, before, db_before)
