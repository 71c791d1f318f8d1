"""Garbage collection of the page store: only unreferenced objects go, crash-safely."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engines.sqlite.pages.helpers import check, restore, take
from support.tracker_db import create_tracker_db
from tracker_backup.engines.sqlite.pages import gc
from tracker_backup.engines.sqlite.pages.index import read_index_file
from tracker_backup.engines.sqlite.pages.objects import ObjectStore

AGENT = Path(__file__).resolve().parents[4] / "agent"
IDS = [f"20261201T00000{i}Z" for i in range(6)]


@pytest.fixture
def generations(tmp_path):
    """Six snapshots of a database that changes between them; (backup, {id: content})."""
    db = create_tracker_db(tmp_path / "tracker.db", rows=8000)
    backup = tmp_path / "backup"
    seen = {}
    conn = sqlite3.connect(db, isolation_level=None)
    for i, snap in enumerate(IDS):
        if i:
            conn.execute("UPDATE torrents SET completed = completed + 1 WHERE rowid % 13 = ?", (i,))
        _result, seen[snap] = take(db, backup, snap, IDS[i - 1] if i else None)
    conn.close()
    return backup, seen


def retire(backup: Path, snap: str) -> None:
    """What retention does: hide the snapshot (its index with it), then delete it."""
    hidden = backup / f".deleting-{snap}"
    os.rename(backup / snap, hidden)
    shutil.rmtree(hidden)


def all_objects(backup: Path) -> set[str]:
    return set(ObjectStore(backup / "pages").names())


def referenced(backup: Path, snaps) -> set[str]:
    out: set[str] = set()
    for s in snaps:
        out |= read_index_file(backup / s / "sqlite" / "tracker.db.pages").object_names()
    return out


def assert_kept_restore(backup: Path, seen: dict, kept, tmp: Path) -> None:
    for snap in kept:
        target = tmp / f"r-{snap}-{os.getpid()}.db"
        target.unlink(missing_ok=True)
        verdict, got = check(restore(backup, snap, target))
        assert verdict == "ok" and got == seen[snap], snap
        target.unlink()


def test_retention_then_collection_frees_only_what_no_kept_snapshot_uses(generations, tmp_path):
    backup, seen = generations
    for snap in IDS[:3]:
        retire(backup, snap)
    kept = IDS[3:]
    before = all_objects(backup)
    dry = gc.collect(backup, dry_run=True)
    assert all_objects(backup) == before  # a dry run deletes nothing
    assert dry.deleted > 0 and dry.freed_bytes > 0
    done = gc.collect(backup)
    assert (done.deleted, done.freed_bytes) == (dry.deleted, dry.freed_bytes)
    assert all_objects(backup) == referenced(backup, kept)
    assert_kept_restore(backup, seen, kept, tmp_path)
    assert gc.collect(backup).deleted == 0


def test_prune_dry_run_counts_objects_of_snapshots_about_to_go(generations):
    backup, _seen = generations
    would = gc.collect(backup, dry_run=True, excluding=IDS[:2])
    only_theirs = referenced(backup, IDS[:2]) - referenced(backup, IDS[2:])
    assert would.deleted == len(only_theirs) > 0
    assert would.freed_bytes == sum(ObjectStore(backup / "pages").size(n) for n in only_theirs)


def test_unreadable_index_stops_the_collection(generations):
    backup, _seen = generations
    retire(backup, IDS[0])
    (backup / IDS[3] / "sqlite" / "tracker.db.pages").write_bytes(b"garbage")
    before = all_objects(backup)
    result = gc.collect(backup)
    assert result.deleted == 0 and "cannot read a page index" in result.problem
    assert all_objects(backup) == before


def test_objects_newer_than_the_newest_index_survive_until_the_run_that_may_need_them_is_over(
        generations):
    backup, _seen = generations
    store = ObjectStore(backup / "pages")
    import hashlib

    from tracker_backup.engines.sqlite.pages.objects import encode_object, new_compressor

    page = bytes(4096)
    name = hashlib.sha256(page).hexdigest()
    store.put(name, encode_object(page, 4096, hashlib.sha256(page).digest()[:16], new_compressor()))
    newest = max(p.stat().st_mtime for p in gc.index_files(backup))
    os.utime(store.path(name), (newest + 10, newest + 10))
    assert gc.collect(backup).kept_young == 1 and store.has(name)
    assert gc.collect(backup, keep_young=False).deleted == 1 and not store.has(name)


def test_staging_indexes_protect_their_objects(generations):
    backup, _seen = generations
    os.rename(backup / IDS[5], backup / f".staging-{IDS[5]}")
    gc.collect(backup)
    assert referenced(backup, IDS[:5]) | read_index_file(
        backup / f".staging-{IDS[5]}" / "sqlite" / "tracker.db.pages").object_names() \
        == all_objects(backup)


@pytest.mark.parametrize("when", [1, 3])
def test_sigkill_in_the_middle_of_a_sweep_loses_nothing_kept_and_the_next_collection_finishes(
        generations, tmp_path, when):
    backup, seen = generations
    for snap in IDS[:4]:
        retire(backup, snap)
    kept = IDS[4:]
    code = f"import sys; sys.path.insert(0, {str(AGENT)!r}); " \
           f"from tracker_backup.engines.sqlite.pages import gc; gc.collect(__import__('pathlib').Path({str(backup)!r}))"
    proc = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=unlink,unlinkat",
                           "-e", f"inject=unlink,unlinkat:signal=SIGKILL:when={when}",
                           sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode in (-9, 137), (proc.returncode, proc.stderr)
    left = all_objects(backup) - referenced(backup, kept)
    assert left, "the kill should have stopped the sweep before it finished"
    assert_kept_restore(backup, seen, kept, tmp_path)
    gc.collect(backup)
    assert all_objects(backup) == referenced(backup, kept)
    assert_kept_restore(backup, seen, kept, tmp_path)


def test_nearly_unused_objects_are_repacked_so_retention_can_free_them(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=1200, pad=3000)  # ~1 row per page
    backup = tmp_path / "backup"
    ids = ["20261201T000000Z", "20261201T000001Z", "20261201T000002Z"]
    first, _ = take(db, backup, ids[0])
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE padding SET data = randomblob(3000) WHERE id % 20 != 0")
    conn.close()
    second, _ = take(db, backup, ids[1], ids[0])
    assert second.repacked_pages == 0  # the base objects were fully used until now
    third, seen = take(db, backup, ids[2], ids[1])
    assert third.repacked_pages > 0 and third.changed_pages == third.repacked_pages
    base = referenced(backup, ids[:1])
    released = base - referenced(backup, ids[2:])  # the newest no longer needs these
    assert len(released) >= len(base) // 2
    for snap in ids[:2]:
        retire(backup, snap)
    gc.collect(backup)
    assert not released & all_objects(backup)
    assert_kept_restore(backup, {ids[2]: seen}, ids[2:], tmp_path)
