"""Point-in-time restore of SQLite from the archive, and the pages changed between two points.

A restore to time T: pick the generation holding the last entry with t <= T,
the newest base of that generation at or before that entry (an own base or a
kept snapshot tied to the archive), decompress the base into a hidden file,
replay the entries after the base up to that entry (each page written at
(pgno-1)*page_size, the file truncated to the commit's size: what SQLite's
checkpoint does), fsync. The caller checks (integrity_check) and places it.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tracker_backup.archive.segment import SegmentError, SegmentInfo, iter_entries
from tracker_backup.archive.store import Generation, SourceArchive
from tracker_backup.archive.times import format_time, parse_at  # noqa: F401 - re-exported
from tracker_backup.artifacts import CHUNK, hash_file, open_decompressed
from tracker_backup.errors import RunFailed


@dataclass
class BaseRef:
    """A database usable as the start of a replay: after entry `seq` of `generation`.

    Either `open` gives its plain bytes as a stream (a full copy), or `write`
    writes them into a file descriptor itself (a page snapshot, reassembled
    from the page store) and returns the size.
    """

    generation: str
    seq: int
    time: float
    label: str                                  # "archive base base-….zst" / "snapshot 2026…"
    open: Callable[[], BinaryIO] | None          # the plain SQLite bytes
    snapshot_id: str | None = None
    write: Callable[[int], int] | None = None


@dataclass
class GenerationRange:
    """What one generation can restore: from its oldest base to its last verified entry."""

    generation: Generation
    segments: list[SegmentInfo]
    problem: str | None
    bases: list[BaseRef] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return self.segments[-1].last_seq if self.segments else 0

    @property
    def newest_time(self) -> float | None:
        """Time of the last archived commit (or of the newest base when there is no entry)."""
        if self.segments:
            return self.segments[-1].last_time
        return max((b.time for b in self.bases), default=None)

    @property
    def oldest_time(self) -> float | None:
        """The earliest moment a restore can reach: the oldest base's point."""
        return min((b.time for b in self.bases), default=None)


def _open_checked(path: Path, compression: str, sha256: str | None) -> BinaryIO:
    """The base's plain bytes, after its stored bytes matched the sha256 of its description."""
    if sha256 is not None:
        _size, digest = hash_file(path)
        if digest != sha256:
            raise RunFailed(f"archive base {path} is damaged: sha256 {digest} where its "
                            f"description says {sha256}")
    return open_decompressed(path, compression)


def _own_bases(gen: Generation) -> list[BaseRef]:
    refs = []
    for b in gen.bases():
        path, comp, sha = b.path, b.info.get("compression", "zstd"), b.info.get("sha256")
        refs.append(BaseRef(gen.id, b.seq, b.time, f"archive base {gen.id}/{b.path.name}",
                            lambda p=path, c=comp, h=sha: _open_checked(p, c, h)))
    return refs


def ranges(backup_path: Path, source: str = "sqlite",
           extra_bases: list[BaseRef] | None = None) -> list[GenerationRange]:
    """Every generation with its bases (own + `extra_bases` tied to it), oldest first."""
    out = []
    for gen in SourceArchive(backup_path, source).generations():
        segs, problem = gen.segments()
        bases = _own_bases(gen) + [b for b in (extra_bases or []) if b.generation == gen.id]
        bases = [b for b in bases if b.seq <= (segs[-1].last_seq if segs else 0)]
        bases.sort(key=lambda b: b.seq)
        out.append(GenerationRange(gen, segs, problem, bases))
    return out


def describe_range(backup_path: Path, source: str = "sqlite",
                   extra_bases: list[BaseRef] | None = None) -> dict:
    """The archive's restorable range for list/status: oldest/newest second, generations."""
    rs = [r for r in ranges(backup_path, source, extra_bases) if r.bases]
    return {
        "generations": [{"id": r.generation.id, "reason": r.generation.info.get("reason"),
                         "oldest": r.oldest_time, "newest": r.newest_time,
                         "entries": r.last_seq, "bases": len(r.bases),
                         "bytes": r.generation.bytes(), "problem": r.problem} for r in rs],
        "oldest": min((r.oldest_time for r in rs if r.oldest_time is not None), default=None),
        "newest": max((r.newest_time for r in rs if r.newest_time is not None), default=None),
    }


@dataclass
class Plan:
    """What `restore --at` will do."""

    generation: Generation
    base: BaseRef
    target_seq: int
    target_time: float
    segments: list[SegmentInfo]

    @property
    def entries(self) -> int:
        return self.target_seq - self.base.seq


def _target_in(rng: GenerationRange, at: float | None) -> tuple[int, float] | None:
    """(seq, time) of the last entry with t <= at in this generation (None: none)."""
    segs = rng.segments
    if at is None:
        if segs:
            return segs[-1].last_seq, segs[-1].last_time
        best = max(rng.bases, key=lambda b: b.seq, default=None)
        return (best.seq, best.time) if best else None
    i = bisect.bisect_right([s.first_time for s in segs], at) - 1
    if i < 0:
        base = max((b for b in rng.bases if b.time <= at), key=lambda b: b.seq, default=None)
        return (base.seq, base.time) if base and base.seq == 0 else None
    seg = segs[i]
    if seg.last_time <= at:
        return seg.last_seq, seg.last_time
    found = (seg.first_seq - 1, segs[i - 1].last_time if i > 0 else seg.first_time)
    for entry in iter_entries(seg.path, with_data=False):
        if entry.time > at:
            break
        found = (entry.seq, entry.time)
    return found


def plan(backup_path: Path, at: float | None, *, source: str = "sqlite",
         extra_bases: list[BaseRef] | None = None) -> Plan:
    """Choose generation, base and last entry for a restore to `at` (POSIX s; None = latest)."""
    rs = [r for r in ranges(backup_path, source, extra_bases) if r.bases]
    if not rs:
        raise RunFailed(f"no continuous archive with a base for [{source}] in {backup_path}")
    for rng in reversed(rs):
        if at is not None and (rng.oldest_time is None or rng.oldest_time > at):
            continue
        target = _target_in(rng, at)
        if target is None:
            continue
        seq, t = target
        usable = [b for b in rng.bases if b.seq <= seq]
        if not usable:
            continue
        if rng.problem and seq >= rng.last_seq and at is None:
            pass  # the range ends at the first fault; `latest` means the last verified entry
        return Plan(rng.generation, usable[-1], seq, t, rng.segments)
    oldest = min(r.oldest_time for r in rs if r.oldest_time is not None)
    raise RunFailed(f"nothing to restore at {format_time(at)}: the archive of [{source}] reaches "
                    f"back to {format_time(oldest)}")


def build(p: Plan, dest: Path, *, page_size: int | None = None,
          progress: Callable[[int], None] | None = None) -> dict:
    """Write the database as of `p.target_seq` to `dest` (created 0600, fsynced)."""
    fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if p.base.write is not None:
            p.base.write(fd)
        else:
            with os.fdopen(os.dup(fd), "wb", buffering=0) as out, p.base.open() as src:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
        size = os.fstat(fd).st_size
        if page_size is None:
            header = os.pread(fd, 100, 0)
            raw = int.from_bytes(header[16:18], "big")
            page_size = 65536 if raw == 1 else raw
        applied = 0
        pages = _PageCache(fd, page_size, size)
        for entry in p.generation.iter_entries(p.base.seq, p.target_seq, p.segments):
            pages.apply(entry.meta, entry.data)
            applied += 1
            if progress and applied % 1000 == 0:
                progress(applied)
        pages.flush()
        os.fsync(fd)
        size = os.fstat(fd).st_size
    except SegmentError as exc:
        os.close(fd)
        dest.unlink(missing_ok=True)
        raise RunFailed(f"archive is damaged: {exc}") from None
    except BaseException:
        os.close(fd)
        dest.unlink(missing_ok=True)
        raise
    os.close(fd)
    return {"generation": p.generation.id, "base": p.base.label, "base_seq": p.base.seq,
            "target_seq": p.target_seq, "entries_applied": applied, "commit_time": p.target_time,
            "bytes": size}


class _PageCache:
    """Replays entries with the newest version of each page kept in memory (bounded).

    A hot page (the tracker's metrics row) is rewritten by nearly every commit:
    keeping the last version and writing it once is what makes replay fast.
    Truncations are applied in order: pages past the new end are dropped from
    the cache and the file is cut, so a page freed and never rewritten stays gone.
    """

    LIMIT = 64 << 20  # bytes of pages held before they are written out

    def __init__(self, fd: int, page_size: int, size: int):
        self.fd, self.page_size, self.size = fd, page_size, size
        self.pages: dict[int, bytes] = {}
        self.high = 0  # highest page number held in the cache

    def apply(self, meta: dict, data: bytes) -> None:
        ps = self.page_size
        for i, pgno in enumerate(meta["pages"]):
            self.pages[pgno] = data[i * ps:(i + 1) * ps]
            self.high = max(self.high, pgno)
        end_pages = meta["db_pages"]
        if max(self.high, self.size // ps) > end_pages:
            for pgno in [p for p in self.pages if p > end_pages]:
                del self.pages[pgno]
            self.high = min(self.high, end_pages)
            if self.size > end_pages * ps:
                os.ftruncate(self.fd, end_pages * ps)
                self.size = end_pages * ps
        if len(self.pages) * ps > self.LIMIT:
            self.flush()

    def flush(self) -> None:
        ps = self.page_size
        for pgno in sorted(self.pages):
            os.pwrite(self.fd, self.pages[pgno], (pgno - 1) * ps)
            self.size = max(self.size, pgno * ps)
        self.pages.clear()
        self.high = 0


def changed_pages(generation: Generation, base_seq: int, end_seq: int,
                  page_size: int) -> tuple[int, Iterator[tuple[int, bytes]]]:
    """Pages changed after entry `base_seq` up to `end_seq`: (page count at end, iterator).

    The iterator yields (pgno, page bytes) once per changed page, its latest
    version as of `end_seq`, in archive order; pages beyond the final page count
    are left out (the database shrank). Applying them onto the base's pages and
    truncating to the page count gives the database as of `end_seq`. Memory: one
    small record per changed page (first pass over the entries' meta), never
    the pages themselves. Raises SegmentError on a damaged or missing segment.
    """
    last: dict[int, tuple[int, int]] = {}
    db_pages = None
    for entry in generation.iter_entries(base_seq, end_seq):
        for i, pgno in enumerate(entry.meta["pages"]):
            last[pgno] = (entry.seq, i)
        db_pages = entry.meta["db_pages"]
    if db_pages is None:
        raise SegmentError(f"{generation.path}: no entries after {base_seq} up to {end_seq}")

    def pages() -> Iterator[tuple[int, bytes]]:
        for entry in generation.iter_entries(base_seq, end_seq):
            for i, pgno in enumerate(entry.meta["pages"]):
                if last.get(pgno) == (entry.seq, i) and pgno <= db_pages:
                    yield pgno, entry.data[i * page_size:(i + 1) * page_size]
    return db_pages, pages()


def drill_point(backup_path: Path, rng, *, source: str = "sqlite",
                extra_bases: list[BaseRef] | None = None) -> float | None:
    """A random second inside the newest restorable generation (None: nothing to drill)."""
    rs = [r for r in ranges(backup_path, source, extra_bases) if r.bases and r.segments]
    if not rs:
        return None
    r = rs[-1]
    lo, hi = r.oldest_time, r.newest_time
    if lo is None or hi is None or hi <= lo:
        return None
    return rng.uniform(lo, hi)
