"""Building the next snapshot: changed pages become new objects, the rest keep
the previous snapshot's references.

Two callers feed it: the live path (every page of a pinned snapshot is read
and hashed, and only pages whose digest differs from the previous snapshot's
are added) and the WAL archive (only the latest version of each page changed
since the base is added), through `write_snapshot`.
"""

from __future__ import annotations

import hashlib
import threading
from array import array
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from tracker_backup.engines.sqlite.pages.index import PageIndex, PageIndexError
from tracker_backup.engines.sqlite.pages.objects import (
    DIGEST_BYTES,
    ObjectStore,
    encode_object,
    new_compressor,
    page_digest,
    pages_per_object,
)

IN_FLIGHT = 2  # groups waiting for compression at most (bounded memory)
# Each object is fsynced before it gets its name (a named object is always whole: later runs
# reuse objects by name). One fsync after another costs a journal commit each (~245 objects
# for a 256 MB database took 15 s on a busy disk); fsyncs issued concurrently are committed
# together, so objects are written by a few threads, at most IO_IN_FLIGHT at a time.
IO_THREADS = 4
IO_IN_FLIGHT = 8
# An object of which the previous snapshot still uses fewer than this share of slots has its
# live pages stored again (repacked): otherwise one long-unchanged page keeps a whole object,
# and the store grows by every day's changes forever instead of being bounded by retention.
# In steady state this re-stores at most REPACK_BELOW / (1 - REPACK_BELOW) of the changes.
REPACK_BELOW = 0.1


@dataclass
class WriteResult:
    """A finished snapshot's index and what writing it cost."""

    index: PageIndex
    changed_pages: int  # pages stored by this snapshot (repacked ones included)
    repacked_pages: int  # unchanged pages stored again to free a nearly unused object
    new_objects: int
    new_bytes: int  # stored bytes of objects this snapshot wrote
    reused_objects: int  # full groups that were already stored (same content)


def load_digests(store: ObjectStore, index: PageIndex) -> bytearray:
    """The 16-byte digest of every page of a snapshot, from its objects' headers."""
    return _load(store, index)[0]


def _load(store: ObjectStore, index: PageIndex) -> tuple[bytearray, set[int]]:
    """(page digests, numbers of the objects the index uses below REPACK_BELOW of)."""
    digests = bytearray(index.page_count * DIGEST_BYTES)
    sparse: set[int] = set()
    firsts, order, starts = index.runs_by_object()
    r = index.runs
    for k, name in enumerate(index.objects):
        if starts[k] == starts[k + 1]:
            continue
        header = store.read_header(name.hex())
        if header.page_size != index.page_size:
            raise PageIndexError(f"object {name.hex()} holds {header.page_size}-byte pages, the "
                                 f"index {index.page_size}-byte pages")
        live = 0
        for j in range(starts[k], starts[k + 1]):
            run = order[j]
            length, slot = r[3 * run], r[3 * run + 2]
            if slot + length > header.count:
                raise PageIndexError(f"index names slots {slot}..{slot + length - 1} of object "
                                     f"{name.hex()}, which holds {header.count}")
            at = (firsts[run] - 1) * DIGEST_BYTES
            digests[at:at + length * DIGEST_BYTES] = \
                header.digests[slot * DIGEST_BYTES:(slot + length) * DIGEST_BYTES]
            live += length
        if live < REPACK_BELOW * header.count:
            sparse.add(k)
    return digests, sparse


UNSET = 0xFFFFFFFF  # no object yet for this page


class SnapshotWriter:
    """Add the changed pages (in any order; a page added twice keeps the later), then
    `finish()`.

    Unchanged pages (not added) keep the previous index's object and slot; the
    references live in two compact per-page arrays (6 bytes a page) until the
    runs are built at the end. Changed pages are grouped in the order they are
    added, at most 1 MiB per object; each group is compressed in a worker
    thread (zstd releases the GIL) while the caller reads on.
    """

    def __init__(self, store: ObjectStore, *, page_size: int, page_count: int,
                 previous: PageIndex | None = None, previous_digests: bytes | None = None,
                 level: int = 3, on_written: Callable[[int], None] | None = None):
        if previous is not None and previous.page_size != page_size:
            previous, previous_digests = None, None  # page size changed: nothing to share
        sparse: set[int] = set()  # previous object numbers to repack
        if previous is not None and previous_digests is None:
            previous_digests, sparse = _load(store, previous)
        self.store = store
        self.page_size = page_size
        self.page_count = page_count
        self.previous = previous
        self.level = level
        self.on_written = on_written
        self.digests = bytearray(page_count * DIGEST_BYTES)
        if previous_digests is not None:
            keep = min(len(previous_digests), len(self.digests))
            self.digests[:keep] = previous_digests[:keep]
        self._prev_pages = min(previous.page_count, page_count) if previous is not None else 0
        self.objects: list[bytes] = list(previous.objects) if previous is not None else []
        self._sparse = sparse  # numbers in self.objects (the previous table comes first)
        self._ref_obj = array("I", [UNSET]) * page_count
        self._ref_slot = array("H", bytes(2 * page_count))
        if previous is not None:
            for first, length, number, slot in previous.iter_runs():
                end = min(first - 1 + length, page_count)
                if end <= first - 1:
                    break
                n = end - (first - 1)
                self._ref_obj[first - 1:end] = array("I", [number]) * n
                self._ref_slot[first - 1:end] = array("H", range(slot, slot + n))
        self._group = bytearray()
        self._group_digests = bytearray()
        self._group_number = -1
        self._per_object = pages_per_object(page_size)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pages-zstd")
        self._io = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="pages-io")
        self._pending: list[Future] = []
        self._io_pending: list[Future] = []
        self._count_lock = threading.Lock()
        self._compressor = None
        self.written: list[str] = []  # objects this writer created (removed again on failure)
        self.changed = 0
        self.repacked = 0
        self.new_objects = 0
        self.new_bytes = 0
        self.reused = 0

    def repacks(self, pgno: int) -> bool:
        """True if unchanged page `pgno` must be stored again: its object is nearly unused."""
        return bool(self._sparse) and pgno <= self._prev_pages \
            and self._ref_obj[pgno - 1] in self._sparse

    # -- changed pages ---------------------------------------------------
    def add(self, pgno: int, page: bytes | memoryview, digest: bytes | None = None,
            repack: bool = False) -> None:
        """Store page `pgno` (changed, every page of a first snapshot, or repacked)."""
        if not 1 <= pgno <= self.page_count:
            raise ValueError(f"page {pgno} is outside 1..{self.page_count}")
        if len(page) != self.page_size:
            raise ValueError(f"page {pgno} has {len(page)} bytes, expected {self.page_size}")
        digest = digest or page_digest(page)
        if self._group_number < 0:
            self._group_number = len(self.objects)
            self.objects.append(b"")  # named when the group is complete
        self._ref_obj[pgno - 1] = self._group_number
        self._ref_slot[pgno - 1] = len(self._group) // self.page_size
        self._group += page
        self._group_digests += digest
        at = (pgno - 1) * DIGEST_BYTES
        self.digests[at:at + DIGEST_BYTES] = digest
        self.changed += 1
        if repack:
            self.repacked += 1
        if len(self._group) >= self._per_object * self.page_size:
            self._flush()

    def _runs(self) -> tuple[list[bytes], array]:
        """The object table (only objects a page uses, renumbered) and the runs."""
        objs, slots = self._ref_obj, self._ref_slot
        numbers: dict[int, int] = {}
        table: list[bytes] = []
        runs = PageIndex(self.page_size, self.page_count).runs
        prev_obj = prev_slot = -1
        for i in range(self.page_count):
            obj, slot = objs[i], slots[i]
            if obj == UNSET:
                raise PageIndexError(f"page {i + 1} is new (the previous snapshot has "
                                     f"{self._prev_pages} pages) but was not given")
            if obj == prev_obj and slot == prev_slot + 1:
                runs[-3] += 1
            else:
                ours = numbers.get(obj)
                if ours is None:
                    ours = numbers[obj] = len(table)
                    table.append(self.objects[obj])
                runs.extend((1, ours, slot))
            prev_obj, prev_slot = obj, slot
        return table, runs

    def _flush(self) -> None:
        if self._group_number < 0:
            return
        pages, digests = bytes(self._group), bytes(self._group_digests)
        name = hashlib.sha256(pages).digest()
        self.objects[self._group_number] = name
        self._group.clear()
        self._group_digests.clear()
        self._group_number = -1
        while len(self._pending) >= IN_FLIGHT:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._write, name.hex(), pages, digests))

    def _write(self, name: str, pages: bytes, digests: bytes) -> None:
        if self.store.has(name):
            self.reused += 1
            return
        if self._compressor is None:
            self._compressor = new_compressor(self.level)
        data = encode_object(pages, self.page_size, digests, self._compressor)
        while len(self._io_pending) >= IO_IN_FLIGHT:
            self._io_pending.pop(0).result()
        self._io_pending.append(self._io.submit(self._put, name, data))

    def _put(self, name: str, data: bytes) -> None:
        if self.store.put(name, data):
            with self._count_lock:
                self.written.append(name)
                self.new_objects += 1
                self.new_bytes += len(data)
            if self.on_written is not None:
                self.on_written(len(data))

    def finish(self) -> WriteResult:
        """Reference the remaining unchanged pages, write the last group, sync the store."""
        try:
            self._flush()
            for fut in self._pending:
                fut.result()
            for fut in self._io_pending:
                fut.result()
        except BaseException:
            self.abort()
            raise
        self._pool.shutdown(wait=True)
        self._io.shutdown(wait=True)
        self.store.sync()
        table, runs = self._runs()
        index = PageIndex(self.page_size, self.page_count, table, runs,
                          hashlib.sha256(self.digests).hexdigest())
        index.check("new page index")
        return WriteResult(index, self.changed, self.repacked, self.new_objects, self.new_bytes,
                           self.reused)

    def abort(self) -> None:
        """After a failure: stop the worker and remove the objects this writer created.

        No published index names them (they did not exist before, and the store
        lock keeps other runs out), so a failed run gives its space back at once;
        after a SIGKILL the next collection removes them instead.
        """
        for fut in self._pending:
            fut.cancel()
        self._pool.shutdown(wait=True)
        for fut in self._io_pending:
            fut.cancel()
        self._io.shutdown(wait=True)
        self._pending.clear()
        self._io_pending.clear()
        for name in self.written:
            self.store.path(name).unlink(missing_ok=True)
        self.written.clear()


def write_snapshot(store: ObjectStore, changed_pages: Iterable[tuple[int, bytes]],
                   previous_index: PageIndex | None, page_count: int, *, page_size: int,
                   level: int = 3) -> WriteResult:
    """The next snapshot from only its changed pages (any order; a later one wins).

    The entry point for the WAL archive: `changed_pages` is the latest version
    of every page changed since `previous_index`'s consistent point; pages not
    given keep the previous snapshot's bytes. With no previous index, every
    page must be given.
    """
    writer = SnapshotWriter(store, page_size=page_size, page_count=page_count,
                            previous=previous_index, level=level)
    try:
        for pgno, page in changed_pages:
            writer.add(pgno, page)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


def write_from_live(store: ObjectStore, live, previous_index: PageIndex | None, *,
                    level: int = 3, chunk_pages: int = 256,
                    on_read: Callable[[int, int], None] | None = None,
                    previous_digests: bytes | None = None) -> WriteResult:
    """The next snapshot from a pinned live page set (`live.LivePages`).

    Every page is read and hashed; a page whose digest equals the previous
    snapshot's digest for that page number is not stored again. `on_read(done,
    total)` is called after each chunk (rate limit, progress, cancellation).
    """
    ps, total = live.page_size, live.page_count
    writer = SnapshotWriter(store, page_size=ps, page_count=total, previous=previous_index,
                            previous_digests=previous_digests, level=level)
    prev = writer.digests  # the previous snapshot's digests until a page is added
    prev_pages = writer._prev_pages
    try:
        for first in range(1, total + 1, chunk_pages):
            count = min(chunk_pages, total + 1 - first)
            data = memoryview(live.read(first, count))
            for i in range(count):
                pgno = first + i
                page = data[i * ps:(i + 1) * ps]
                digest = page_digest(page)
                at = (pgno - 1) * DIGEST_BYTES
                if pgno <= prev_pages and prev[at:at + DIGEST_BYTES] == digest:
                    if writer.repacks(pgno):
                        writer.add(pgno, page, digest, repack=True)
                    continue
                writer.add(pgno, page, digest)
            if on_read is not None:
                on_read(first + count - 1, total)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()
