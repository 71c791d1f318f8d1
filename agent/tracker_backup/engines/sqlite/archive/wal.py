"""Reading SQLite's WAL and wal-index (-shm) directly, read-only, without locks.

The wal-index header (the first 136 bytes of -shm) says which frames are
committed: frames 1..mxFrame of the current WAL generation (identified by its
salts). SQLite's own readers trust it the same way: the writer publishes the
header only after the frames are written, writes its two copies in opposite
order, and checksums it; a reader retries while the copies differ. So the
archiver never has to recompute the WAL's frame checksums in Python; it checks
each frame's salts instead, and the commit frame's cumulative checksum is
recorded so continuity can be proven later.

Layouts (sqlite.org/walformat.html):
  WAL header (32 bytes, big-endian): magic, version, page size, checkpoint seq,
    salt-1, salt-2, checksum-1, checksum-2.
  Frame header (24 bytes, big-endian): pgno, nTruncate (db size in pages for a
    commit frame, else 0), salt-1, salt-2, checksum-1, checksum-2; then the page.
  wal-index header (native byte order), twice: iVersion, unused, iChange,
    isInit(u8), bigEndCksum(u8), szPage(u16), mxFrame, nPage, aFrameCksum[2],
    aSalt[2] (raw bytes of the WAL header's salts), aCksum[2]; then the
    checkpoint info: nBackfill, aReadMark[5], ...
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

WAL_HEADER = 32
FRAME_HEADER = 24
WAL_MAGICS = (0x377F0682, 0x377F0683)
_NATIVE = "<" if sys.byteorder == "little" else ">"
_SHM_HDR = struct.Struct(_NATIVE + "IIIBBHII")  # 24 bytes, then cksums and salts
_FRAME = struct.Struct(">IIIIII")
READ_CHUNK = 1 << 20  # bytes of frames read at a time (bounded memory)


@dataclass(frozen=True)
class IndexHeader:
    """The wal-index header as the writer last published it."""

    change: int
    page_size: int
    mx_frame: int
    n_page: int
    salt1: int
    salt2: int
    n_backfill: int
    read_marks: tuple[int, ...]

    @property
    def salts(self) -> tuple[int, int]:
        return (self.salt1, self.salt2)


def _checksum(data: bytes, native: bool = True) -> tuple[int, int]:
    """SQLite's walChecksumBytes over `data` (a multiple of 8 bytes)."""
    words = struct.unpack((_NATIVE if native else ">") + f"{len(data) // 4}I", data)
    s1 = s2 = 0
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
        s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
    return s1, s2


def read_index_header(shm_fd: int, tries: int = 100) -> IndexHeader | None:
    """The wal-index header, or None when no consistent copy could be read."""
    for _ in range(tries):
        raw = os.pread(shm_fd, 136, 0)
        if len(raw) < 136:
            return None
        h1, h2 = raw[:48], raw[48:96]
        if h1 != h2:
            continue
        _version, _unused, change, is_init, _big, szpage, mx, npage = _SHM_HDR.unpack(h1[:24])
        if not is_init:
            return None
        if _checksum(h1[:40]) != struct.unpack(_NATIVE + "II", h1[40:48]):
            continue
        salt1, salt2 = struct.unpack(">II", h1[32:40])
        info = struct.unpack(_NATIVE + "6I", raw[96:120])
        page_size = 65536 if szpage == 1 else szpage
        return IndexHeader(change, page_size, mx, npage, salt1, salt2, info[0], info[1:])
    return None


@dataclass(frozen=True)
class Frame:
    """One WAL frame: its index (1-based), page number, commit size, salts, checksum, page."""

    index: int
    pgno: int
    n_truncate: int
    salt1: int
    salt2: int
    cksum: tuple[int, int]
    page: bytes

    @property
    def is_commit(self) -> bool:
        return self.n_truncate != 0


def frame_offset(index: int, page_size: int) -> int:
    return WAL_HEADER + (index - 1) * (FRAME_HEADER + page_size)


def read_frames(wal_fd: int, page_size: int, first: int, last: int,
                with_pages: bool = True) -> Iterator[Frame]:
    """Frames first..last (inclusive), read in ~1 MiB chunks."""
    size = FRAME_HEADER + page_size
    per_chunk = max(1, READ_CHUNK // size)
    index = first
    while index <= last:
        n = min(per_chunk, last - index + 1)
        if with_pages:
            buf = os.pread(wal_fd, n * size, frame_offset(index, page_size))
        else:
            buf = b"".join(os.pread(wal_fd, FRAME_HEADER, frame_offset(index + k, page_size))
                           for k in range(n))
            size_h = FRAME_HEADER
        step = size if with_pages else size_h
        if len(buf) < n * step:
            n = len(buf) // step
            if n == 0:
                return
        view = memoryview(buf)
        for k in range(n):
            off = k * step
            pgno, ntrunc, s1, s2, c1, c2 = _FRAME.unpack_from(view, off)
            page = bytes(view[off + FRAME_HEADER: off + size]) if with_pages else b""
            yield Frame(index + k, pgno, ntrunc, s1, s2, (c1, c2), page)
        index += n


def read_frame_header(wal_fd: int, page_size: int, index: int) -> Frame | None:
    for f in read_frames(wal_fd, page_size, index, index, with_pages=False):
        return f
    return None


def wal_header(wal_fd: int) -> tuple[int, int, int, int, int] | None:
    """(magic, page size, checkpoint seq, salt1, salt2) of the WAL file, None if too short."""
    raw = os.pread(wal_fd, WAL_HEADER, 0)
    if len(raw) < WAL_HEADER:
        return None
    magic, _version, page_size, ckpt, s1, s2, _c1, _c2 = struct.unpack(">8I", raw)
    if magic not in WAL_MAGICS:
        return None
    return magic, page_size, ckpt, s1, s2
