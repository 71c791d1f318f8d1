"""layout = pages under faults: SIGKILL while objects are written, at the index publish and
in the garbage collection; a disk that fills up mid-run. Kept snapshots never lose a page."""

from __future__ import annotations

import json
import sqlite3

import pytest

from faults.conftest import tmpfs  # noqa: F401 - the small real tmpfs fixture
from faults.harness import (
    RENAMES,
    SyscallTrap,
    assert_survived,
    db_state,
    fingerprints,
    kill,
    leave_free,
    make_host,
    remount,
    used_bytes,
    wait_for,
)
from tracker_backup.engines.sqlite.pages.index import read_index_file
from tracker_backup.engines.sqlite.pages.objects import ObjectStore

KILLED = (-9, 128 + 9)
PAGES = "layout = pages"


def store(host) -> ObjectStore:
    return ObjectStore(host.backups / "pages")


def referenced(host) -> set[str]:
    names: set[str] = set()
    for snap in host.snapshots():
        names |= read_index_file(snap / "sqlite" / "tracker.db.pages").object_names()
    return names


def rewrite_padding(host, share: int = 1) -> None:
    """New random bytes in every `share`-th padding row: those pages all change."""
    conn = sqlite3.connect(host.db, isolation_level=None)
    conn.execute("UPDATE padding SET data = randomblob(length(data)) WHERE id % ? = 0", (share,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def assert_store_consistent(host) -> None:
    """Every object a snapshot names exists; after a prune nothing unreferenced is left."""
    names = set(store(host).names())
    assert referenced(host) <= names
    prune = host.cli("prune")
    assert prune.returncode == 0, prune.stderr
    assert set(store(host).names()) == referenced(host)
    assert not list(store(host).temporaries())


def test_sigkill_while_objects_are_written_publishes_nothing_and_loses_nothing(tmp_path):
    host = make_host(tmp_path, rows=3000, pad=4000, backup=PAGES)  # ~12 MB of random pages
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    objects_before = set(store(host).names())
    rewrite_padding(host)
    host.write_config(backup=f"path = {host.backups}\n{PAGES}\nrate_limit = 3")
    proc = host.start()
    wait_for(lambda: len(set(store(host).names()) - objects_before) >= 2,
             what="new objects being written", proc=proc)
    code, _out, _err = kill(proc)
    assert code in KILLED
    assert {p.name for p in host.snapshots()} == set(before)
    assert set(store(host).names()) - objects_before, "the kill should leave unpublished objects"
    host.write_config(backup=f"path = {host.backups}\n{PAGES}")
    assert_survived(host, before, db_before)
    assert_store_consistent(host)


def test_sigkill_at_the_index_publish_publishes_nothing_and_the_orphans_are_collected(tmp_path):
    host = make_host(tmp_path, rows=3000, pad=2000, backup=PAGES,
                     retention="keep_last = 3\nkeep_days = 0")
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    objects_before = set(store(host).names())
    rewrite_padding(host, 2)
    host.write_config(backup=f"path = {host.backups}\n{PAGES}\nrate_limit = 2")
    proc = host.start()
    staging = wait_for(host.staging, what="the staging directory", proc=proc)
    trap = SyscallTrap(proc.pid, staging, RENAMES, when=1)  # rename(.staging-ID, ID)
    proc.wait(timeout=120)
    trace = trap.close()
    assert proc.returncode in KILLED, trace
    assert (staging / "sqlite" / "tracker.db.pages").is_file()  # index written, not published
    assert {p.name for p in host.snapshots()} == set(before)
    orphans = set(store(host).names()) - objects_before
    assert orphans
    host.write_config(backup=f"path = {host.backups}\n{PAGES}")
    assert_survived(host, before, db_before)
    assert_store_consistent(host)


@pytest.mark.parametrize("into_sweep", [1, 3])
def test_sigkill_in_the_garbage_collection_never_deletes_what_a_kept_snapshot_needs(
        tmp_path, into_sweep):
    host = make_host(tmp_path, rows=3000, pad=2000, backup=PAGES, files=False,
                     retention="keep_last = 5\nkeep_days = 0")
    for i in range(3):
        if i:
            rewrite_padding(host)
        host.cli("run", "--no-prune", check=True)
    oldest = host.snapshots()[0]
    before, db_before = fingerprints(host), db_state(host.db)
    host.write_config(retention="keep_last = 2\nkeep_days = 0")
    doomed = referenced_by(oldest) - referenced_by(*host.snapshots()[1:])
    assert len(doomed) > into_sweep
    # Retention's rmtree of the snapshot uses unlinkat(2); the collector unlinks objects with
    # unlink(2): the trap counts only those.
    proc = host.start("prune", prefix=[
        "strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=unlink",
        "-e", f"inject=unlink:signal=SIGKILL:when={into_sweep}"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in KILLED, err
    assert not oldest.exists()
    left = set(store(host).names())
    assert doomed & left  # killed before the sweep was done
    assert referenced(host) <= left  # nothing a kept snapshot needs was deleted
    assert_survived(host, before, db_before, may_delete={oldest.name})
    assert_store_consistent(host)


def referenced_by(*snaps) -> set[str]:
    names: set[str] = set()
    for snap in snaps:
        names |= read_index_file(snap / "sqlite" / "tracker.db.pages").object_names()
    return names


def test_disk_full_while_objects_are_written_fails_cleanly_and_gives_the_space_back(
        tmp_path, tmpfs):  # noqa: F811 - the fixture imported above
    MB = 1_000_000
    backups = tmpfs(tmp_path / "backups")
    host = make_host(tmp_path, rows=1000, pad=4000, backups=backups, backup=PAGES,
                     retention="keep_last = 1\nkeep_days = 0")
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    rewrite_padding(host)  # the next snapshot needs ~4 MB of new objects
    leave_free(host.backups, 2 * MB)
    used = used_bytes(host.backups)
    proc = host.cli("run")
    assert proc.returncode == 1, proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert str(host.backups) in proc.stderr.splitlines()[-1], proc.stderr
    assert {p.name for p in host.snapshots()} == set(before)
    assert host.debris() == []
    assert used_bytes(host.backups) <= used, "the failed run left its objects behind"
    status = json.loads((host.backups / ".state/status.json").read_text())
    assert status["last_run"]["result"] == "failed"
    remount(host.backups, "size=64m")
    assert_survived(host, before, db_before)
    assert_store_consistent(host)
