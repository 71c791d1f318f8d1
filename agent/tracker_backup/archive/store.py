"""The continuous archive in the backup path: generations, bases, segments, shipping.

    <path>/archive/<source>/.lock
    <path>/archive/<source>/<GEN>/GENERATION.json
    <path>/archive/<source>/<GEN>/base-<SEQ>.<kind>[.zst] + base-<SEQ>.json
    <path>/archive/<source>/<GEN>/<FIRST>-<LAST>.seg

docs/format.md ("Continuous archive") is the user-facing description. The
rules kept here: a name under which something is published is only ever
created by a rename of an fsynced file; readers verify the chain and stop at
the first fault; nothing is deleted that a kept base still needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tracker_backup import __version__
from tracker_backup.archive.segment import (
    SEGMENT_RE,
    TMP_PREFIX,
    Entry,
    SegmentError,
    SegmentInfo,
    SegmentWriter,
    chain_start,
    iter_entries,
    read_trailer,
)
from tracker_backup.artifacts import DIR_MODE, FILE_MODE, fsync_dir, store_file
from tracker_backup.errors import LockHeld, RunFailed
from tracker_backup.store import iso, utc_now, write_json_atomic

log = logging.getLogger(__name__)

ARCHIVE_DIR = "archive"
GENERATION_FILE = "GENERATION.json"
PRUNED_FILE = "PRUNED.json"  # where the generation's kept entries start after retention
# Compaction (in the archiver) and prune (in a run, another process) of one source take turns
# on this lock: both rewrite the segment list, and a merge of segments begun before a prune's
# PRUNED marker and published after it would start before the marker's entry, a list no
# reader accepts (every later entry then unreadable). Found by reading the code while tracing
# a CI failure whose cause was another (retention.py: the newest segment always stays).
MAINTENANCE_LOCK = ".maintenance.lock"
GEN_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
BASE_JSON_RE = re.compile(r"^base-(\d{12})\.json$")
# Compaction levels: (level, merge segments older than AGE s into groups spanning <= SPAN s).
COMPACTION = ((1, 60.0, 60.0), (2, 900.0, 600.0))


def archive_root(backup_path: Path) -> Path:
    return Path(backup_path) / ARCHIVE_DIR


@contextlib.contextmanager
def maintenance_lock(source_dir: Path, wait: float) -> Iterator[bool]:
    """Hold the source's MAINTENANCE_LOCK; yields False if it was not had within `wait` s
    (the caller then skips its turn: a skipped compaction or prune loses nothing)."""
    import time

    fd = os.open(Path(source_dir) / MAINTENANCE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 FILE_MODE)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    got = False
                    break
                time.sleep(0.05)
        yield got
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Base:
    """A full copy of the source, consistent after entry `seq` of its generation."""

    path: Path
    info: dict

    @property
    def seq(self) -> int:
        return int(self.info["seq"])

    @property
    def time(self) -> float:
        return float(self.info["time"])


class Generation:
    """One unbroken lineage of a source: its bases and segments."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name
        self._info: dict | None = None

    @property
    def info(self) -> dict:
        if self._info is None:
            try:
                with open(self.path / GENERATION_FILE, encoding="utf-8") as fh:
                    data = json.load(fh)
                self._info = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._info = {}
        return self._info

    @property
    def chain_0(self) -> bytes:
        return chain_start(self.id)

    def start(self) -> tuple[int, str]:
        """(first seq, chain before it) of the kept entries: 1 and chain_0 until retention ran."""
        try:
            with open(self.path / PRUNED_FILE, encoding="utf-8") as fh:
                data = json.load(fh)
            return int(data["first_seq"]), str(data["chain_before"])
        except FileNotFoundError:
            return 1, self.chain_0.hex()
        except (OSError, ValueError, KeyError, TypeError):
            return 1, self.chain_0.hex()  # damaged: the check below reports the hole

    def mark_pruned(self, first_seq: int, chain_before: str) -> None:
        """Record (durably, before deleting) that entries before `first_seq` are gone on purpose."""
        write_json_atomic(self.path / PRUNED_FILE, {"format": 1, "first_seq": first_seq,
                                                    "chain_before": chain_before})

    # -- segments ------------------------------------------------------------------
    def segment_files(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if SEGMENT_RE.match(p.name))

    def segments(self) -> tuple[list[SegmentInfo], str | None]:
        """The contiguous, linked segments from seq 1 on, and the first fault after them.

        Only trailers are read (cheap); entries are verified when iterated. Segments
        covered by a longer one (a compaction interrupted before it deleted its
        inputs) are ignored.
        """
        infos: list[SegmentInfo] = []
        problem = None
        for p in self.segment_files():
            try:
                trailer, _ = read_trailer(p)
            except SegmentError as exc:
                problem = problem or str(exc)
                continue
            m = SEGMENT_RE.match(p.name)
            if (int(m.group(1)), int(m.group(2))) != (trailer["first_seq"], trailer["last_seq"]) \
                    or trailer["generation"] != self.id:
                problem = problem or f"{p}: trailer does not match the file's name or generation"
                continue
            infos.append(SegmentInfo(p, trailer))
        infos.sort(key=lambda s: (s.first_seq, -s.last_seq))
        chosen: list[SegmentInfo] = []
        expect, chain = self.start()
        for seg in infos:
            if chosen and seg.last_seq <= chosen[-1].last_seq:
                continue  # covered by a merged segment
            if seg.last_seq < expect:
                continue  # left by a retention that was cut short
            if seg.first_seq != expect:
                if seg.first_seq > expect:
                    problem = (f"{self.path}: entries {expect}..{seg.first_seq - 1} are missing "
                               f"(next segment is {seg.path.name})")
                else:
                    problem = f"{seg.path}: overlaps the previous segment without covering it"
                break
            if seg.trailer["chain_before"] != chain:
                problem = f"{seg.path}: does not continue the chain of the segment before it"
                break
            chosen.append(seg)
            expect, chain = seg.last_seq + 1, seg.trailer["chain_after"]
        return chosen, problem

    def iter_entries(self, after: int, upto: int | None = None,
                     segments: list[SegmentInfo] | None = None) -> Iterator[Entry]:
        """Entries after+1 .. upto (inclusive; None = all), verified; SegmentError on a fault.

        A segment stopped at `upto` is still read to its end, so its chain and
        checksums are verified before the iterator ends. A segment that vanished
        (a compaction merged it meanwhile) is looked up again.
        """
        first = self.start()[0]
        expect = after + 1
        if expect < first:
            raise SegmentError(f"{self.path}: entries before {first} were removed by retention")
        segs, problem = (segments, None) if segments is not None else self.segments()
        relisted = 0
        while upto is None or expect <= upto:
            seg = next((s for s in segs if s.first_seq <= expect <= s.last_seq), None)
            if seg is None:
                break
            try:
                entries = iter_entries(seg.path)
                for entry in entries:
                    if entry.seq < expect:
                        continue
                    if upto is not None and entry.seq > upto:
                        for _ in entries:  # verify the rest of this segment too
                            pass
                        return
                    expect = entry.seq + 1
                    yield entry
            except SegmentError:
                if seg.path.exists() or relisted >= 3:
                    raise
                relisted += 1
                segs, problem = self.segments()
        if upto is None and problem:
            raise SegmentError(problem)
        if upto is not None and expect <= upto:
            raise SegmentError(problem or f"{self.path}: entry {expect} is not in the archive "
                               f"(wanted up to {upto})")

    def remove_debris(self) -> list[str]:
        """Temporary files, bases without their description, segments covered by a merge."""
        removed = []
        for p in self.path.iterdir():
            if p.name.startswith(TMP_PREFIX) or (p.name.startswith(".") and ".tmp-" in p.name):
                p.unlink(missing_ok=True)
                removed.append(p.name)
        described = {b.path.name for b in self.bases()}
        for p in self.path.glob("base-*"):
            if not p.name.endswith(".json") and p.name not in described:
                p.unlink(missing_ok=True)
                removed.append(p.name)
        chosen, _ = self.segments()
        keep = {s.path for s in chosen}
        spans = [(s.first_seq, s.last_seq) for s in chosen] + [(0, self.start()[0] - 1)]
        for p in self.segment_files():
            m = SEGMENT_RE.match(p.name)
            a, b = int(m.group(1)), int(m.group(2))
            if p not in keep and any(x <= a and b <= y for x, y in spans):
                p.unlink(missing_ok=True)
                removed.append(p.name)
        if removed:
            fsync_dir(self.path)
        return removed

    # -- bases ---------------------------------------------------------------------
    def bases(self) -> list[Base]:
        """Own bases with their description and file present, oldest first."""
        found = []
        for p in self.path.iterdir():
            if not BASE_JSON_RE.match(p.name):
                continue
            try:
                with open(p, encoding="utf-8") as fh:
                    info = json.load(fh)
                path = self.path / info["path"]
                if path.is_file():
                    found.append(Base(path, info))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        found.sort(key=lambda b: b.seq)
        return found

    def publish_base(self, src: Path, *, kind: str, seq: int, time: float, position: dict,
                     extra: dict | None = None, compression: str = "zstd") -> Base:
        """Store `src` (a consistent full copy after entry `seq`) as a base of this generation."""
        name = f"base-{seq:012d}.{kind}"
        tmp_rel = f"{TMP_PREFIX}{name}-{os.getpid()}"
        art = store_file(src, self.path, tmp_rel, source=self.info.get("source", ""),
                         content=kind, compression=compression)
        final = name + (".zst" if compression == "zstd" else "")
        os.rename(self.path / art.path, self.path / final)
        fsync_dir(self.path)
        info = {"format": 1, "kind": "archive-base", "generation": self.id, "seq": seq,
                "time": time, "path": final, "compression": compression, "bytes": art.bytes,
                "raw_bytes": art.raw_bytes, "sha256": art.sha256, "position": position,
                **(extra or {})}
        write_json_atomic(self.path / f"base-{seq:012d}.json", info)
        return Base(self.path / final, info)

    def delete_base(self, base: Base) -> None:
        (self.path / f"base-{base.seq:012d}.json").unlink(missing_ok=True)
        base.path.unlink(missing_ok=True)
        fsync_dir(self.path)

    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


class SourceArchive:
    """`<backup path>/archive/<source>/`: the generations of one source."""

    def __init__(self, backup_path: Path, source: str):
        self.backup_path = Path(backup_path)
        self.source = source
        self.path = archive_root(backup_path) / source

    def ensure(self) -> None:
        for d in (archive_root(self.backup_path), self.path):
            d.mkdir(mode=DIR_MODE, exist_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the one-archiver-per-source lock; LockHeld names the holder."""
        self.ensure()
        lock_path = self.path / ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                raise LockHeld(f"another archiver of {self.source!r} holds {lock_path}: "
                               f"{holder or 'unknown holder'}") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {iso(utc_now())}\n"
                      .encode(), 0)
            yield
        finally:
            os.close(fd)

    def generations(self) -> list[Generation]:
        """All generations, oldest first."""
        if not self.path.is_dir():
            return []
        return sorted((Generation(p) for p in self.path.iterdir()
                       if GEN_RE.match(p.name) and (p / GENERATION_FILE).is_file()),
                      key=lambda g: g.id)

    def current(self) -> Generation | None:
        gens = self.generations()
        return gens[-1] if gens else None

    def new_generation(self, *, engine: str, reason: str, identity: dict, origin: str,
                       previous: str | None = None) -> Generation:
        """Create and durably publish a new, empty generation."""
        self.ensure()
        now = utc_now()
        gen_id = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"
        tmp = self.path / f".tmp-{gen_id}"
        tmp.mkdir(mode=DIR_MODE)
        write_json_atomic(tmp / GENERATION_FILE, {
            "format": 1, "kind": "archive-generation", "id": gen_id, "source": self.source,
            "engine": engine, "created": iso(now), "reason": reason, "previous": previous,
            "origin": origin, "identity": identity, "host": socket.gethostname(),
            "agent_version": __version__})
        os.rename(tmp, self.path / gen_id)
        fsync_dir(self.path)
        return Generation(self.path / gen_id)

    def remove_debris(self) -> list[str]:
        removed = []
        if not self.path.is_dir():
            return removed
        import shutil

        for p in self.path.iterdir():
            if p.name.startswith(".tmp-") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        for gen in self.generations():
            removed += [f"{gen.id}/{n}" for n in gen.remove_debris()]
        return removed


class Shipper:
    """Appends entries to a generation and publishes them as level-0 segments.

    Resumes after the last published entry of the generation (its chain state is
    taken from the trailers, which `Generation.segments()` checked are linked).
    """

    def __init__(self, generation: Generation, *, zstd_level: int = 3):
        self.generation = generation
        self.zstd_level = zstd_level
        segs, problem = generation.segments()
        if problem:
            raise RunFailed(f"archive generation {generation.id}: {problem}")
        last = segs[-1] if segs else None
        self.last_seq = last.last_seq if last else 0
        self.chain = bytes.fromhex(last.trailer["chain_after"]) if last else generation.chain_0
        self.last_published_meta: dict | None = last.trailer.get("last_meta") if last else None
        self.last_published_time: float | None = last.last_time if last else None
        self.oldest_pending_time: float | None = None
        self.published_bytes = 0
        self._writer: SegmentWriter | None = None

    @property
    def pending(self) -> int:
        return self._writer.entries if self._writer else 0

    def append(self, t: float, meta: dict, data: bytes) -> int:
        """Add one entry (the next seq) to the open segment; OSError when the write fails."""
        self.append_begin(t)
        return self._writer.append(t, meta, data)

    def append_stream(self, t: float, meta: dict, length: int, chunks) -> int:
        """append() for data too large to hold in memory (an iterable of chunks)."""
        self.append_begin(t)
        return self._writer.append_stream(t, meta, length, chunks)

    def append_begin(self, t: float) -> None:
        if self._writer is None:
            info = self.generation.info
            self._writer = SegmentWriter(
                self.generation.path, source=info.get("source", ""), engine=info.get("engine", ""),
                generation=self.generation.id, first_seq=self.last_seq + 1,
                chain_before=self.chain, zstd_level=self.zstd_level)
        if self.oldest_pending_time is None:
            self.oldest_pending_time = t

    @property
    def next_seq(self) -> int:
        return self._writer.next_seq if self._writer else self.last_seq + 1

    def publish(self) -> int:
        """Publish pending entries as one segment; OSError leaves nothing published."""
        writer = self._writer
        if writer is None or writer.entries == 0:
            return 0
        try:
            info = writer.publish()
        except BaseException:
            self._writer = None
            self.oldest_pending_time = None
            raise
        self._writer = None
        self.oldest_pending_time = None
        self.last_seq = info.last_seq
        self.chain = writer.chain
        self.last_published_meta = info.trailer["last_meta"]
        self.last_published_time = info.last_time
        self.published_bytes += info.bytes
        return info.trailer["entries"]

    def rewind(self) -> None:
        """Drop unpublished entries (their temporary file)."""
        if self._writer is not None:
            self._writer.discard()
        self._writer = None
        self.oldest_pending_time = None

    def compact(self, now: float) -> int:
        """Merge one group of old small segments (see COMPACTION); returns segments merged.

        Skipped (0) while a prune holds the source's maintenance lock."""
        with maintenance_lock(self.generation.path.parent, 0) as got:
            if not got:
                return 0
            segs, problem = self.generation.segments()
            if problem:
                return 0
            for level, age, span in COMPACTION:
                group = _closed_group(segs, level, now - age, span)
                if len(group) >= 2:
                    merge_segments(self.generation, group, level=level,
                                   zstd_level=self.zstd_level)
                    return len(group)
            return 0


def _closed_group(segs: list[SegmentInfo], level: int, older_than: float,
                  span: float) -> list[SegmentInfo]:
    """The first run of >= 2 segments below `level`, all older than `older_than`, spanning
    <= `span` seconds and followed by a segment past that span (so the group is complete)."""
    def eligible(seg: SegmentInfo) -> bool:
        return seg.trailer.get("level", 0) < level and seg.last_time < older_than

    i = 0
    while i < len(segs):
        if not eligible(segs[i]):
            i += 1
            continue
        start, j = segs[i], i + 1
        while j < len(segs) and eligible(segs[j]) and segs[j].last_time - start.first_time <= span:
            j += 1
        if j >= len(segs) or segs[j].last_time - start.first_time <= span:
            return []  # the run is not complete yet (its next segment is too young)
        if j - i >= 2:
            return segs[i:j]
        i = j
    return []


def merge_segments(gen: Generation, group: list[SegmentInfo], *, level: int,
                   zstd_level: int = 3) -> SegmentInfo:
    """Rewrite consecutive segments as one (published first; the inputs deleted after)."""
    info = gen.info
    writer = SegmentWriter(gen.path, source=info.get("source", ""), engine=info.get("engine", ""),
                           generation=gen.id, first_seq=group[0].first_seq,
                           chain_before=bytes.fromhex(group[0].trailer["chain_before"]),
                           level=level, zstd_level=zstd_level)
    try:
        for seg in group:
            for entry in iter_entries(seg.path):
                meta = {k: v for k, v in entry.meta.items() if k not in ("seq", "t")}
                writer.append(entry.time, meta, entry.data)
    except BaseException:
        writer.discard()
        raise
    if writer.chain.hex() != group[-1].trailer["chain_after"]:
        writer.discard()
        raise SegmentError(f"{gen.path}: merging {group[0].path.name}..{group[-1].path.name} "
                           "did not reproduce the chain")
    merged = writer.publish()
    for seg in group:
        seg.path.unlink(missing_ok=True)
    fsync_dir(gen.path)
    return merged
