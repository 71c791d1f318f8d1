"""One archive segment file: entries in a zstd frame, a trailer, a hash chain.

Format (docs/format.md, "Segment file"): a zstd frame (content checksum on)
holding entries `u32 meta_len | meta JSON | u32 data_len | data`, then a zstd
skippable frame holding the trailer JSON, its u32 length and b"TBSEGEND".

`SegmentWriter` streams entries into a hidden temporary file (nothing is held
in memory beyond zstd's window) and `publish()` makes it durable and gives it
its final name in one rename. `read_trailer` and `iter_entries` read one back
and verify it (payload sha256, zstd checksum, chain).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from tracker_backup.artifacts import FILE_MODE, fsync_dir

FORMAT = 1
END_MARK = b"TBSEGEND"
SKIPPABLE_MAGIC = 0x184D2A5E
SEGMENT_RE = re.compile(r"^(\d{12})-(\d{12})\.seg$")
TMP_PREFIX = ".tmp-"
_U32 = struct.Struct(">I")


class SegmentError(Exception):
    """A segment is torn, altered, or does not continue the chain it should."""


def chain_start(generation: str) -> bytes:
    """chain_0 of a generation: sha256("tracker-backup archive " + GEN)."""
    return hashlib.sha256(f"tracker-backup archive {generation}".encode()).digest()


def trailer_digest(trailer: dict) -> str:
    """sha256 of the trailer's other keys (compact, sorted JSON): the trailer checks itself."""
    rest = {k: v for k, v in trailer.items() if k != "trailer_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def segment_name(first: int, last: int) -> str:
    return f"{first:012d}-{last:012d}.seg"


@dataclass(frozen=True)
class Entry:
    """One committed change of a source: its sequence number, time seen, meta and data."""

    seq: int
    time: float
    meta: dict
    data: bytes


def encode_meta(seq: int, t: float, meta: dict) -> bytes:
    return json.dumps({**meta, "seq": seq, "t": t}, separators=(",", ":"),
                      sort_keys=True).encode()


def next_chain(chain: bytes, meta_bytes: bytes, data: bytes) -> bytes:
    """chain_n = sha256(chain_{n-1} || entry_n) without copying the entry."""
    h = hashlib.sha256(chain)
    h.update(_U32.pack(len(meta_bytes)))
    h.update(meta_bytes)
    h.update(_U32.pack(len(data)))
    h.update(data)
    return h.digest()


class _Hashing:
    """Write-through wrapper hashing and counting the bytes that reach the file."""

    def __init__(self, fh):
        self.fh = fh
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.fh.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.fh.flush()


class SegmentWriter:
    """Streams entries FIRST.. into a temporary file; `publish()` makes it a segment.

    Nothing is visible under a segment name until publish() returned: a failure
    anywhere (disk full, EIO, SIGKILL) leaves at most a `.tmp-*` file.
    """

    def __init__(self, directory: Path, *, source: str, engine: str, generation: str,
                 first_seq: int, chain_before: bytes, level: int = 0, zstd_level: int = 3):
        self.directory = Path(directory)
        self.source, self.engine, self.generation = source, engine, generation
        self.first_seq = first_seq
        self.next_seq = first_seq
        self.chain_before = chain_before
        self.chain = chain_before
        self.level = level
        self.zstd_level = zstd_level
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.first_meta: dict | None = None
        self.last_meta: dict | None = None
        self.raw_bytes = 0
        self.tmp = self.directory / f"{TMP_PREFIX}{first_seq:012d}-{os.getpid()}.seg"
        self._fh = None

    @property
    def entries(self) -> int:
        return self.next_seq - self.first_seq

    def _open(self) -> None:
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        self._fh = os.fdopen(fd, "wb", buffering=1 << 20)
        self._hashing = _Hashing(self._fh)
        cctx = zstandard.ZstdCompressor(level=self.zstd_level, write_checksum=True)
        self._zw = cctx.stream_writer(self._hashing, closefd=False)

    def append(self, t: float, meta: dict, data: bytes) -> int:
        """Add one entry (the next seq); returns its seq. Raises OSError when the write fails."""
        if self._fh is None:
            self._open()
        seq = self.next_seq
        meta_bytes = encode_meta(seq, t, meta)
        self._zw.write(_U32.pack(len(meta_bytes)))
        self._zw.write(meta_bytes)
        self._zw.write(_U32.pack(len(data)))
        self._zw.write(data)
        self.chain = next_chain(self.chain, meta_bytes, data)
        self.raw_bytes += 8 + len(meta_bytes) + len(data)
        if self.first_time is None:
            self.first_time, self.first_meta = t, dict(meta)
        self.last_time, self.last_meta = t, dict(meta)
        self.next_seq += 1
        return seq

    def append_stream(self, t: float, meta: dict, length: int, chunks) -> int:
        """Like append(), for large data given as an iterable of byte chunks totalling `length`."""
        if self._fh is None:
            self._open()
        seq = self.next_seq
        meta_bytes = encode_meta(seq, t, meta)
        h = hashlib.sha256(self.chain)
        for part in (_U32.pack(len(meta_bytes)), meta_bytes, _U32.pack(length)):
            self._zw.write(part)
            h.update(part)
        written = 0
        for chunk in chunks:
            self._zw.write(chunk)
            h.update(chunk)
            written += len(chunk)
        if written != length:
            raise ValueError(f"entry {seq}: {written} bytes of data where {length} were announced")
        self.chain = h.digest()
        self.raw_bytes += 8 + len(meta_bytes) + length
        if self.first_time is None:
            self.first_time, self.first_meta = t, dict(meta)
        self.last_time, self.last_meta = t, dict(meta)
        self.next_seq += 1
        return seq

    def trailer(self) -> dict:
        return {
            "format": FORMAT, "kind": "archive-segment", "source": self.source,
            "engine": self.engine, "generation": self.generation,
            "first_seq": self.first_seq, "last_seq": self.next_seq - 1,
            "first_time": self.first_time, "last_time": self.last_time,
            "entries": self.entries, "raw_bytes": self.raw_bytes,
            "chain_before": self.chain_before.hex(), "chain_after": self.chain.hex(),
            "payload_sha256": self._hashing.sha.hexdigest(), "level": self.level,
            "first_meta": self.first_meta, "last_meta": self.last_meta,
        }

    def publish(self) -> SegmentInfo:
        """Finish the frame, write the trailer, fsync, rename into place, fsync the directory."""
        if self.entries == 0:
            raise ValueError("an empty segment is never published")
        try:
            self._zw.flush(zstandard.FLUSH_FRAME)
            trailer = self.trailer()
            trailer["trailer_sha256"] = trailer_digest(trailer)
            body = json.dumps(trailer, sort_keys=True).encode()
            skip_payload = body + _U32.pack(len(body)) + END_MARK
            self._fh.write(struct.pack("<II", SKIPPABLE_MAGIC, len(skip_payload)) + skip_payload)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            final = self.directory / segment_name(self.first_seq, self.next_seq - 1)
            os.rename(self.tmp, final)
            fsync_dir(self.directory)
        except BaseException:
            self.discard()
            raise
        return SegmentInfo(final, trailer)

    def discard(self) -> None:
        """Drop the temporary file (after a failure, or when nothing was appended)."""
        if self._fh is not None:
            with contextlib.suppress(Exception):
                self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


@dataclass(frozen=True)
class SegmentInfo:
    """A published segment: its path and trailer."""

    path: Path
    trailer: dict

    @property
    def first_seq(self) -> int:
        return self.trailer["first_seq"]

    @property
    def last_seq(self) -> int:
        return self.trailer["last_seq"]

    @property
    def first_time(self) -> float:
        return self.trailer["first_time"]

    @property
    def last_time(self) -> float:
        return self.trailer["last_time"]

    @property
    def bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0


def read_trailer(path: Path) -> tuple[dict, int]:
    """(trailer, length of the zstd frame before it); SegmentError when it is not a segment."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 8 + 12:
                raise SegmentError(f"{path}: too short to be a segment ({size} bytes)")
            fh.seek(size - 12)
            tail = fh.read(12)
            if tail[4:] != END_MARK:
                raise SegmentError(f"{path}: no segment trailer (torn or not a segment)")
            n = _U32.unpack(tail[:4])[0]
            start = size - 12 - n - 8
            if start < 0:
                raise SegmentError(f"{path}: trailer length {n} is impossible")
            fh.seek(start)
            head = fh.read(8)
            magic, skip_len = struct.unpack("<II", head)
            if magic != SKIPPABLE_MAGIC or skip_len != n + 12:
                raise SegmentError(f"{path}: trailer frame header is damaged")
            trailer = json.loads(fh.read(n))
    except OSError as exc:
        raise SegmentError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise SegmentError(f"{path}: trailer is not valid JSON: {exc}") from None
    if not isinstance(trailer, dict) or trailer.get("kind") != "archive-segment":
        raise SegmentError(f"{path}: trailer does not describe a segment")
    if trailer.get("trailer_sha256") != trailer_digest(trailer):
        raise SegmentError(f"{path}: trailer checksum does not match (damaged trailer)")
    return trailer, start


class _LimitedHashingReader:
    """Reads at most `limit` bytes of `fh`, hashing them."""

    def __init__(self, fh, limit: int):
        self.fh, self.left = fh, limit
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        self.sha.update(data)
        return data


def _read_exact(reader, n: int, path: Path) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = reader.read(n - len(buf))
        if not chunk:
            raise SegmentError(f"{path}: entry stream ends in the middle of an entry")
        buf += chunk
    return bytes(buf)


def iter_entries(path: Path, *, with_data: bool = True) -> Iterator[Entry]:
    """Yield a segment's entries in order, verifying seq, chain, payload hash and zstd checksum.

    The verification of the whole segment completes only when the iterator is
    exhausted: a consumer that must not act on a bad segment (restore) applies
    entries to scratch space only. Raises SegmentError at the first fault.
    """
    trailer, frame_len = read_trailer(path)
    chain = bytes.fromhex(trailer["chain_before"])
    expect = trailer["first_seq"]
    with open(path, "rb") as fh:
        limited = _LimitedHashingReader(fh, frame_len)
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(limited, read_across_frames=False)
            while True:
                head = reader.read(4)
                if not head:
                    break
                if len(head) < 4:
                    head += _read_exact(reader, 4 - len(head), path)
                meta_bytes = _read_exact(reader, _U32.unpack(head)[0], path)
                data_len = _U32.unpack(_read_exact(reader, 4, path))[0]
                data = _read_exact(reader, data_len, path)
                chain = next_chain(chain, meta_bytes, data)
                meta = json.loads(meta_bytes)
                if meta.get("seq") != expect:
                    raise SegmentError(f"{path}: entry {meta.get('seq')} where {expect} was expected")
                expect += 1
                yield Entry(meta["seq"], float(meta["t"]), meta, data if with_data else b"")
        except zstandard.ZstdError as exc:
            raise SegmentError(f"{path}: compressed data is damaged: {exc}") from None
        except ValueError as exc:
            raise SegmentError(f"{path}: an entry's meta is not valid JSON: {exc}") from None
        # Drain whatever zstd did not need, so the hash covers the whole frame.
        while limited.read(1 << 20):
            pass
    if expect != trailer["last_seq"] + 1:
        raise SegmentError(f"{path}: holds entries up to {expect - 1}, trailer says {trailer['last_seq']}")
    if chain.hex() != trailer["chain_after"]:
        raise SegmentError(f"{path}: chain hash does not match its trailer (altered entries)")
    if limited.sha.hexdigest() != trailer["payload_sha256"]:
        raise SegmentError(f"{path}: payload sha256 does not match its trailer")


def verify_segment(path: Path) -> dict:
    """Read a whole segment, checking everything; returns its trailer."""
    for _ in iter_entries(path, with_data=False):
        pass
    return read_trailer(path)[0]
