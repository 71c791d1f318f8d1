"""A run's snapshot as a base (exact WAL position), and changed pages between two points."""

from __future__ import annotations

import hashlib
import sqlite3
import time

from support.archive_kit import (  # noqa: F401 - the fixtures tracker and procs
    applied_prefix,
    procs_fixture,
    restore_at,
    tracker_fixture,
)
from tracker_backup.archive.store import SourceArchive
from tracker_backup.artifacts import open_decompressed
from tracker_backup.engines.sqlite.archive import restore as pitr
from tracker_backup.engines.sqlite.archive.position import WalPosition, reader_begin, resolve


def _snapshot(db, dest):
    """What a timer run does: a read transaction at a recorded position, the backup API."""
    with WalPosition(db) as wal_position:
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        position = wal_position.begin(reader_begin(src))
        out = sqlite3.connect(dest)
        src.backup(out)
        out.close()
        src.execute("ROLLBACK")
        src.close()
    return position


def _pages_digest(path, page_size=4096):
    data = path.read_bytes()
    return [hashlib.sha256(data[i:i + page_size]).hexdigest() for i in range(0, len(data), page_size)]


def test_snapshot_position_resolves_to_the_entry_it_was_taken_at(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup)
    w = procs.writer(db, rate=300)
    time.sleep(1)
    position = _snapshot(db, tmp_path / "snap.db")
    time.sleep(1.5)
    arch.stop_after(w)
    assert position is not None and position["frame"] > 0
    resolved = resolve(backup, position)
    assert resolved is not None
    gen_id, seq = resolved
    assert seq > 0
    # Replaying the archive's own base up to that entry gives the snapshot's database.
    gen = SourceArchive(backup, "sqlite").current()
    plan = pitr.plan(backup, None)
    plan.target_seq = seq
    pitr.build(plan, tmp_path / "replayed.db")
    k = applied_prefix(tmp_path / "snap.db", w.commits(), metric0)
    assert applied_prefix(tmp_path / "replayed.db", w.commits(), metric0) == k
    # And the snapshot, used as the base, plus the entries after it gives the latest state.
    ref = pitr.BaseRef(gen_id, seq, position["time"], "snapshot",
                       lambda: open(tmp_path / "snap.db", "rb"), snapshot_id="S")
    plan = pitr.plan(backup, None, extra_bases=[ref])
    assert plan.base.label == "snapshot" and plan.generation.id == gen.id
    pitr.build(plan, tmp_path / "from_snap.db")
    assert applied_prefix(tmp_path / "from_snap.db", w.commits(), metric0) == len(w.commits())


def test_changed_pages_applied_to_the_base_give_the_later_state(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup)
    w = procs.writer(db, rate=300)
    time.sleep(2)
    arch.stop_after(w)
    gen = SourceArchive(backup, "sqlite").current()
    base = gen.bases()[0]
    end = gen.segments()[0][-1].last_seq
    count, pages = pitr.changed_pages(gen, base.seq, end, 4096)
    target = tmp_path / "inc.db"
    with open_decompressed(base.path, "zstd") as src, open(target, "wb") as out:
        out.write(src.read())
    seen = set()
    with open(target, "r+b") as fh:
        for pgno, page in pages:
            assert pgno not in seen and len(page) == 4096
            seen.add(pgno)
            fh.seek((pgno - 1) * 4096)
            fh.write(page)
        fh.truncate(count * 4096)
    restore_at(backup, None, tmp_path / "full.db")
    assert _pages_digest(target) == _pages_digest(tmp_path / "full.db")
    assert 0 < len(seen) < count
    assert applied_prefix(target, w.commits(), metric0) == len(w.commits())
