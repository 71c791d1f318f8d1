"""Reassembly proves every page it writes: objects checked whole or page by page, pages_digest."""

from __future__ import annotations

import sqlite3

import pytest

from engines.sqlite.pages.helpers import check, restore, take
from support.tracker_db import create_tracker_db
from tracker_backup.engines.sqlite.pages.index import read_index_file
from tracker_backup.engines.sqlite.pages.objects import (
    DIGEST_BYTES,
    ObjectStore,
    encode_object,
    new_compressor,
    page_digest,
)
from tracker_backup.engines.sqlite.pages.reassemble import WHOLE_CHECK_FROM, ReassembleError

IDS = ["20261201T000000Z", "20261201T000001Z"]


def _two_snapshots(tmp_path):
    """A database whose second snapshot uses its first object only sparsely."""
    db = create_tracker_db(tmp_path / "tracker.db", rows=20000, pad=64)
    backup = tmp_path / "backup"
    take(db, backup, IDS[0])
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE torrents SET completed = completed + 1 WHERE rowid % 3 = 0")
    conn.execute("UPDATE torrent_aggregate_metrics SET value = value + changes()")
    conn.close()
    _result, seen = take(db, backup, IDS[1], IDS[0])
    index = read_index_file(backup / IDS[1] / "sqlite" / "tracker.db.pages")
    store = ObjectStore(backup / "pages")
    used: dict[int, int] = {}
    for _page, length, obj, _slot in index.iter_runs():
        used[obj] = used.get(obj, 0) + length
    sparse = [index.objects[k].hex() for k, n in used.items()
              if n < WHOLE_CHECK_FROM * store.read_header(index.objects[k].hex()).count]
    assert sparse, "the update left no sparsely used object"
    return backup, store, index, sparse[0], seen


def _used_slot(index, name: str) -> int:
    k = next(i for i, o in enumerate(index.objects) if o.hex() == name)
    return next(slot for _p, _n, obj, slot in index.iter_runs() if obj == k)


def _forge(store, name: str, slot: int, *, fix_header: bool) -> None:
    """Replace object `name` by a valid object whose page `slot` holds other bytes."""
    header, pages = store.read_pages(name)
    ps = header.page_size
    forged = bytearray(pages)
    forged[slot * ps + 200] ^= 0xFF  # a valid zstd frame of the wrong bytes
    digests = bytearray(header.digests)
    if fix_header:
        digests[slot * DIGEST_BYTES:(slot + 1) * DIGEST_BYTES] = \
            page_digest(forged[slot * ps:(slot + 1) * ps])
    store.path(name).write_bytes(encode_object(bytes(forged), ps, bytes(digests), new_compressor()))


def test_sparse_and_whole_objects_reassemble_to_exactly_the_snapshot(tmp_path):
    backup, _store, _index, _sparse, seen = _two_snapshots(tmp_path)
    verdict, got = check(restore(backup, IDS[1], tmp_path / "out.db"))
    assert verdict == "ok" and got == seen


@pytest.mark.parametrize("fix_header", [False, True], ids=["header-kept", "header-forged"])
def test_a_used_page_replaced_inside_a_sparse_object_is_refused(tmp_path, fix_header):
    backup, store, index, sparse, _seen = _two_snapshots(tmp_path)
    _forge(store, sparse, _used_slot(index, sparse), fix_header=fix_header)
    with pytest.raises(ReassembleError, match=sparse if not fix_header else "pages_digest"):
        restore(backup, IDS[1], tmp_path / "out.db")
    assert not (tmp_path / "out.db").exists()


def test_a_page_replaced_inside_a_wholly_used_object_is_refused_by_its_name(tmp_path):
    backup, store, index, _sparse, _seen = _two_snapshots(tmp_path)
    name = index.objects[0].hex()  # the first snapshot alone: every slot of every object used
    _forge(store, name, 0, fix_header=True)
    with pytest.raises(ReassembleError, match=f"{name}: content does not match its name"):
        restore(backup, IDS[0], tmp_path / "out.db")
    assert not (tmp_path / "out.db").exists()


def test_unused_slots_of_a_sparse_object_need_not_be_intact(tmp_path):
    """Only the pages written are proven; a later snapshot's verify checks whole objects."""
    from tracker_backup.engines.sqlite.pages.reassemble import check_objects

    backup, store, index, sparse, seen = _two_snapshots(tmp_path)
    k = next(i for i, o in enumerate(index.objects) if o.hex() == sparse)
    used = {slot + i for _p, n, obj, slot in index.iter_runs() if obj == k for i in range(n)}
    unused = min(set(range(store.read_header(sparse).count)) - used)
    _forge(store, sparse, unused, fix_header=False)
    verdict, got = check(restore(backup, IDS[1], tmp_path / "out.db"))
    assert verdict == "ok" and got == seen
    assert any(sparse in p for p in check_objects(store, index))
