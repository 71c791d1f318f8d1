"""Page-store snapshots of a live database restore to exactly their consistent point."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engines.sqlite.pages.helpers import check, restore, take
from support.tracker_db import create_tracker_db, info_hash
from tracker_backup.engines.sqlite.pages.objects import ObjectStore

ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "rollback"])
def test_every_generation_under_a_live_writer_restores_to_its_consistent_point(
        tmp_path, start_writer, wal):
    db = create_tracker_db(tmp_path / "tracker.db", rows=20000, wal=wal, pad=64)
    backup = tmp_path / "backup"
    writer = start_writer(db, rate=400, existing=20000)
    taken = []
    previous = None
    for gen in range(10):
        committed_before = writer.stats().get("last_new_committed", -1)
        snap = f"2026120{gen // 10}T00000{gen % 10}Z"
        result, seen = take(db, backup, snap, previous)
        taken.append((snap, committed_before, seen, result))
        previous = snap
        time.sleep(0.15)
    stats = writer.stop()
    assert stats["ops"] > 50 and stats["errors"] == 0
    for snap, committed_before, seen, _result in taken:
        out = restore(backup, snap, tmp_path / f"{snap}.db")
        verdict, got = check(out)
        assert verdict == "ok"
        assert got == seen  # exactly the pinned snapshot, no more, no less
        assert got["sum"] == got["metric"]  # the tracker's invariant
        if committed_before >= 0:
            conn = sqlite3.connect(f"file:{out}?mode=ro&immutable=1", uri=True)
            assert conn.execute("SELECT 1 FROM torrents WHERE info_hash = ?",
                                (info_hash(committed_before),)).fetchone()
            conn.close()
    later = [r for _s, _c, _seen, r in taken[1:]]
    first = taken[0][3]
    # Later snapshots store only what changed: a fraction of the first one.
    assert all(r.new_bytes < first.new_bytes / 2 for r in later)
    assert all(r.changed_pages < r.index.page_count / 2 for r in later)


def test_unchanged_database_stores_nothing_new(tmp_path):
    db = create_tracker_db(tmp_path / "tracker.db", rows=5000)
    backup = tmp_path / "backup"
    first, _ = take(db, backup, "20261201T000000Z")
    second, _ = take(db, backup, "20261201T000001Z", "20261201T000000Z")
    assert first.new_objects > 0
    assert (second.changed_pages, second.new_objects, second.new_bytes) == (0, 0, 0)
    assert second.index.pages_digest == first.index.pages_digest


def test_growth_shrink_and_wal_pages_past_the_file_end(tmp_path):
    """Pages only in the WAL (the file has not grown yet) and a database that shrinks."""
    db = create_tracker_db(tmp_path / "tracker.db", rows=2000)
    backup = tmp_path / "backup"
    take(db, backup, "20261201T000000Z")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")  # new pages stay in the WAL only
    conn.execute("CREATE TABLE extra (b BLOB)")
    conn.executemany("INSERT INTO extra VALUES (randomblob(3000))", [()] * 300)
    grown, seen = take(db, backup, "20261201T000001Z", "20261201T000000Z")
    assert grown.index.page_count * 4096 > db.stat().st_size  # really past the file's end
    conn.execute("DROP TABLE extra")
    conn.execute("VACUUM")
    conn.close()
    shrunk, seen2 = take(db, backup, "20261201T000002Z", "20261201T000001Z")
    assert shrunk.index.page_count < grown.index.page_count
    for snap, expect in (("20261201T000001Z", seen), ("20261201T000002Z", seen2)):
        verdict, got = check(restore(backup, snap, tmp_path / f"{snap}.db"))
        assert verdict == "ok" and got == expect


def test_bit_flip_in_a_shared_object_is_reported_for_every_snapshot_using_it(tmp_path):
    from tracker_backup.engines.sqlite.pages.index import read_index_file
    from tracker_backup.engines.sqlite.pages.reassemble import ReassembleError, check_objects

    db = create_tracker_db(tmp_path / "tracker.db", rows=5000)
    backup = tmp_path / "backup"
    ids = [f"20261201T00000{i}Z" for i in range(3)]
    take(db, backup, ids[0])
    conn = sqlite3.connect(db, isolation_level=None)
    for i, snap in enumerate(ids[1:], 1):
        conn.execute("UPDATE torrents SET completed = completed + 1 WHERE rowid % 97 = ?", (i,))
        take(db, backup, snap, ids[i - 1])
    conn.close()
    indexes = {s: read_index_file(backup / s / "sqlite" / "tracker.db.pages") for s in ids}
    shared = sorted(set.intersection(*(i.object_names() for i in indexes.values())))
    victim = ObjectStore(backup / "pages").path(shared[0])
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    checked: dict = {}
    for snap in ids:
        problems = check_objects(ObjectStore(backup / "pages"), indexes[snap], checked)
        assert any(shared[0] in p for p in problems), snap
        with pytest.raises(ReassembleError, match=shared[0]):
            restore(backup, snap, tmp_path / f"{snap}.db")
        assert not (tmp_path / f"{snap}.db").exists()


def test_standalone_reassemble_script_matches_the_agent(tmp_path):
    import json

    db = create_tracker_db(tmp_path / "tracker.db", rows=3000)
    backup = tmp_path / "backup"
    result, seen = take(db, backup, "20261201T000000Z")
    snap = backup / "20261201T000000Z"
    (snap / "MANIFEST.json").write_text(json.dumps(
        {"sources": {"sqlite": {"layout": "pages", "index": "sqlite/tracker.db.pages"}}}))
    out = tmp_path / "out.db"
    proc = subprocess.run(["/usr/bin/python3", str(ROOT / "packaging" / "tracker-backup-reassemble.py"),
                           str(snap), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    verdict, got = check(out)
    assert verdict == "ok" and got == seen
    assert out.read_bytes() == restore(backup, "20261201T000000Z", tmp_path / "agent.db").read_bytes()
    # Without python3-zstandard it falls back to the zstd command.
    env_py = f"import sys; sys.modules['zstandard'] = None; sys.argv = {[str(ROOT / 'packaging' / 'tracker-backup-reassemble.py'), str(snap), str(tmp_path / 'cli.db')]!r}; exec(open(sys.argv[0]).read())"
    proc = subprocess.run([sys.executable, "-c", env_py], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli.db").read_bytes() == out.read_bytes()


def test_write_snapshot_from_changed_pages_alone_in_any_order_matches_the_database(tmp_path):
    """The archive's entry point: only the pages changed since the base, unsorted, repeated."""
    from tracker_backup.engines.sqlite.pages.index import compress_index, read_index_file
    from tracker_backup.engines.sqlite.pages.writer import write_snapshot

    db = create_tracker_db(tmp_path / "tracker.db", rows=6000)
    backup = tmp_path / "backup"
    take(db, backup, "20261201T000000Z")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = db.read_bytes()
    conn.execute("UPDATE torrents SET completed = completed + 7 WHERE id % 29 = 0")
    conn.executemany("INSERT INTO torrents(info_hash, completed) VALUES (?, 1)",
                     [(f"{10**12 + n:040x}",) for n in range(3000)])  # the file grows
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    after = db.read_bytes()
    ps = 4096
    pages = [(i // ps + 1, after[i:i + ps]) for i in range(0, len(after), ps)
             if after[i:i + ps] != before[i:i + ps]]
    assert 0 < len(pages) < len(after) // ps
    stale = [(pgno, bytes(ps)) for pgno, _ in pages[:5]]  # older versions, superseded below
    changed = stale + pages[::-1]
    result = write_snapshot(ObjectStore(backup / "pages"), changed,
                            read_index_file(backup / "20261201T000000Z/sqlite/tracker.db.pages"),
                            len(after) // ps, page_size=ps)
    assert result.changed_pages == len(changed)
    (backup / "20261201T000001Z/sqlite").mkdir(parents=True)
    (backup / "20261201T000001Z/sqlite/tracker.db.pages").write_bytes(compress_index(result.index))
    out = restore(backup, "20261201T000001Z", tmp_path / "out.db")
    assert out.read_bytes() == after
