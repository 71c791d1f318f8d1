"""Reassembling a snapshot into a plain SQLite file, and checking its objects.

Each referenced object is read and decompressed exactly once (at most 1 MiB
each, a bounded read-ahead of a few objects in two worker threads: zstd and
SHA-256 release the GIL, so decompressing uses both cores and overlaps writing) and
its slots are written where the index puts them, one `pwrite` per run of
consecutive pages. Memory stays bounded whatever the database's size.

Why every restored page is proven to be the page the index names, with each
page hashed at most once (docs/format.md, "What a reader needs"):
- an object most of whose slots the snapshot uses is checked whole against its
  name (SHA-256 of its pages); its pages are then exactly the bytes the writer
  stored, and their digests are taken from the object's header unhashed;
- of an object the snapshot uses only a few slots of, only those pages are
  hashed (16-byte digest) and compared with the header's digest of their slot;
- either way the page digests, in page order, must hash to the index's
  pages_digest, which the writer computed from the pages it read: that binds
  every page of the result (and every header digest used) to the index.
An index without pages_digest (none is written so) has every object checked whole.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tracker_backup.engines.sqlite.pages.index import PageIndex
from tracker_backup.engines.sqlite.pages.objects import (
    DIGEST_BYTES,
    ObjectError,
    ObjectHeader,
    ObjectStore,
    page_digest,
)

# Objects decoded ahead of the writer, by DECODERS threads: each costs its stored plus
# its decompressed bytes (≤ 2 MiB), so a few keep the cores busy and memory bounded.
READ_AHEAD = 4
DECODERS = 2
# Used share of an object's slots from which checking it whole (one SHA-256 of all
# its pages) is cheaper than hashing only the used pages one by one.
WHOLE_CHECK_FROM = 0.75


class ReassembleError(Exception):
    """The snapshot cannot be reassembled: names every object that failed."""


@dataclass
class _Decoded:
    """One object ready to be written: its pages and the digest of every used slot."""

    name: str
    header: ObjectHeader | None = None
    pages: bytes = b""
    digests: dict[int, bytes] | None = None  # slot → digest of the page read (None: header's)
    problem: str | None = None


def _decode(store: ObjectStore, name: str, ps: int, slots: list[int], bound: bool,
            known: str | None | bool) -> _Decoded:
    """Read, decompress and check one object (runs in the read-ahead thread).

    `slots`: the slots the snapshot uses (sorted); `bound`: the index has a
    pages_digest (else the object is checked whole); `known`: a cached result
    (None: already checked whole and good; a string: its problem; False: unknown).
    """
    if isinstance(known, str):
        return _Decoded(name, problem=known)
    try:
        header, pages = store.read_pages(name, check_name=False)
    except ObjectError as exc:
        return _Decoded(name, problem=str(exc))
    if header.page_size != ps:
        return _Decoded(name, problem=f"object {name} holds {header.page_size}-byte pages")
    if slots[-1] >= header.count:
        return _Decoded(name, problem=f"object {name}: index names slot {slots[-1]}, it holds "
                                      f"{header.count}")
    if known is None:
        return _Decoded(name, header, pages)
    if not bound or len(slots) >= WHOLE_CHECK_FROM * header.count:
        if hashlib.sha256(pages).hexdigest() != name:
            return _Decoded(name, problem=f"object {name}: content does not match its name "
                                          "(SHA-256)")
        return _Decoded(name, header, pages)
    view = memoryview(pages)
    digests = {s: page_digest(view[s * ps:(s + 1) * ps]) for s in slots}
    for s, d in digests.items():
        if d != header.digests[s * DIGEST_BYTES:(s + 1) * DIGEST_BYTES]:
            return _Decoded(name, problem=f"object {name}: page in slot {s} does not match its "
                                          "digest (damaged)")
    return _Decoded(name, header, pages, digests)


def _decoded_in_order(store: ObjectStore, jobs: Iterator[tuple[str, list[int], bool]], ps: int,
                      checked: dict[str, str | None] | None) -> Iterator[_Decoded]:
    """Decode the objects of `jobs` in order, up to READ_AHEAD ahead of the consumer."""
    with ThreadPoolExecutor(max_workers=DECODERS, thread_name_prefix="pages-read") as pool:
        ahead: deque[Future] = deque()
        todo = jobs
        try:
            while True:
                while len(ahead) < READ_AHEAD:
                    job = next(todo, None)
                    if job is None:
                        break
                    name, slots, bound = job
                    known = checked.get(name, False) if checked is not None else False
                    ahead.append(pool.submit(_decode, store, name, ps, slots, bound, known))
                if not ahead:
                    return
                yield ahead.popleft().result()
        finally:
            for f in ahead:
                f.cancel()


class _CombiningWriter:
    """Collects runs of pages (copies, at most LIMIT bytes) and writes them sorted by
    offset, each stretch of consecutive pages with one `pwritev`.

    Objects come in the order the index first uses them, roughly ascending, so
    runs of different objects that are neighbours in the file usually meet in
    the buffer: far fewer, sequential system calls than one per run.
    """

    LIMIT = 8 << 20
    IOV_MAX = 1024

    def __init__(self, fd: int):
        self.fd = fd
        self.pending: dict[int, bytes] = {}  # offset → bytes
        self.size = 0

    def add(self, offset: int, data: memoryview) -> None:
        self.pending[offset] = bytes(data)
        self.size += len(data)
        if self.size >= self.LIMIT:
            self.flush()

    def flush(self) -> None:
        group: list[bytes] = []
        start = end = 0
        for off in sorted(self.pending):
            data = self.pending[off]
            if group and (off != end or len(group) >= self.IOV_MAX):
                self._write(start, group)
                group = []
            if not group:
                start = end = off
            group.append(data)
            end += len(data)
        if group:
            self._write(start, group)
        self.pending.clear()
        self.size = 0

    def _write(self, offset: int, bufs: list[bytes]) -> None:
        total = sum(len(b) for b in bufs)
        done = os.pwritev(self.fd, bufs, offset)
        if done != total:  # short write (rare): finish the rest the plain way
            rest = memoryview(b"".join(bufs))[done:]
            while rest:
                n = os.pwrite(self.fd, rest, offset + total - len(rest))
                rest = rest[n:]


def reassemble(store: ObjectStore, index: PageIndex, out_fd: int, *,
               on_object: Callable[[int, int], None] | None = None,
               checked: dict[str, str | None] | None = None) -> None:
    """Write the database of `index` into `out_fd` (from offset 0); check everything.

    Every page written is proven to be the page the index names (module
    docstring); the page digests of the result are checked against the index's
    pages_digest. `checked` caches per-object results (name → problem, or None
    for an object checked whole and good) across snapshots.
    """
    ps = index.page_size
    os.ftruncate(out_fd, index.page_count * ps)
    digests = bytearray(index.page_count * DIGEST_BYTES)
    firsts, order, starts = index.runs_by_object()
    r = index.runs
    problems = []
    used = [k for k in range(len(index.objects)) if starts[k] != starts[k + 1]]

    def jobs() -> Iterator[tuple[str, list[int], bool]]:
        # Made as the read-ahead asks for them: only a few objects' slot lists exist at once.
        for k in used:
            slots = sorted({r[3 * run + 2] + i for run in order[starts[k]:starts[k + 1]]
                            for i in range(r[3 * run])})
            yield index.objects[k].hex(), slots, bool(index.pages_digest)

    decoded = _decoded_in_order(store, jobs(), ps, checked)
    out = _CombiningWriter(out_fd)
    for done, (k, got) in enumerate(zip(used, decoded, strict=True), 1):
        if got.problem is not None:
            if checked is not None and got.name not in checked:
                checked[got.name] = got.problem
            problems.append(got.problem)
            continue
        if checked is not None and got.digests is None:
            checked[got.name] = None
        view, head = memoryview(got.pages), got.header.digests
        for j in range(starts[k], starts[k + 1]):
            run = order[j]
            length, slot = r[3 * run], r[3 * run + 2]
            out.add((firsts[run] - 1) * ps, view[slot * ps:(slot + length) * ps])
            at = (firsts[run] - 1) * DIGEST_BYTES
            if got.digests is None:
                digests[at:at + length * DIGEST_BYTES] = \
                    head[slot * DIGEST_BYTES:(slot + length) * DIGEST_BYTES]
            else:
                for i in range(length):
                    digests[at + i * DIGEST_BYTES:at + (i + 1) * DIGEST_BYTES] = \
                        got.digests[slot + i]
        if on_object is not None:
            on_object(done, len(used))
    out.flush()
    if problems:
        raise ReassembleError("; ".join(problems[:5]) + (
            f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    if index.pages_digest and hashlib.sha256(digests).hexdigest() != index.pages_digest:
        raise ReassembleError("the reassembled pages do not match the index's pages_digest")


def reassemble_to(store: ObjectStore, index: PageIndex, target: Path, **kwargs) -> None:
    """Reassemble into a new file `target` (0600), fsynced; removed again on failure."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        reassemble(store, index, fd, **kwargs)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        target.unlink(missing_ok=True)
        raise
    os.close(fd)


def check_objects(store: ObjectStore, index: PageIndex,
                  checked: dict[str, str | None] | None = None) -> list[str]:
    """Problems of every object the index uses (each decompressed and hashed once)."""
    checked = {} if checked is None else checked
    problems = []
    for name in sorted(index.object_names()):
        if name not in checked:
            try:
                store.read_pages(name, check_digests=True)
                checked[name] = None
            except ObjectError as exc:
                checked[name] = str(exc)
        if checked[name]:
            problems.append(checked[name])
    return problems
