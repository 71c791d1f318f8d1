"""The WAL file and its wal-index (-shm) as far as consistent page reads need them.

Formats: https://www.sqlite.org/fileformat2.html#walformat (WAL file: 32-byte
header, 24-byte frame headers, big-endian) and https://www.sqlite.org/walformat.html
(wal-index header: two identical 48-byte copies in native byte order, then the
checkpoint info with nBackfill).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

WAL_MAGICS = (0x377F0682, 0x377F0683)
WAL_VERSION = 3007000
WAL_HEADER = 32
FRAME_HEADER = 24
_SHM_HDR = struct.Struct("=IIIBBHII8s8s8s")  # iVersion unused iChange isInit bigEnd szPage mxFrame nPage
_SHM_BYTES = 136


class WalError(Exception):
    """The WAL or wal-index is not in a state the page reader can use."""


@dataclass(frozen=True)
class WalIndexHeader:
    """What the wal-index header says about the newest committed WAL state."""

    page_size: int
    mx_frame: int  # last valid commit frame
    n_page: int  # database size in pages after that commit
    salts: bytes  # 8 bytes, as in the WAL file header
    n_backfill: int  # frames already copied into the main database file


def read_wal_index(shm_fd: int, shm_path: str) -> WalIndexHeader:
    """Read the wal-index header; both copies must agree (caller holds the write lock).

    The caller keeps `shm_fd` open until its SQLite connections are closed:
    closing any descriptor of the -shm file would drop this process's POSIX
    locks on it, the read marks that pin the snapshot among them.
    """
    try:
        raw = os.pread(shm_fd, _SHM_BYTES, 0)
    except OSError as exc:
        raise WalError(f"cannot read {shm_path}: {exc.strerror}") from None
    if len(raw) < _SHM_BYTES or raw[:48] != raw[48:96]:
        raise WalError(f"{shm_path}: wal-index header missing or its two copies differ")
    version, _u, _change, is_init, _be, sz, mx, n_page, _fck, salts, _ck = _SHM_HDR.unpack(raw[:48])
    if version != WAL_VERSION or not is_init:
        raise WalError(f"{shm_path}: wal-index header not initialised (version {version})")
    page_size = 65536 if sz == 1 else sz
    (n_backfill,) = struct.unpack_from("=I", raw, 96)
    return WalIndexHeader(page_size, mx, n_page, salts, n_backfill)


def read_wal_salts(fd: int) -> bytes:
    """The 8 salt bytes of the WAL file header (b'' if the WAL is empty)."""
    head = os.pread(fd, WAL_HEADER, 0)
    if len(head) < WAL_HEADER:
        return b""
    magic, version = struct.unpack_from(">II", head)
    if magic not in WAL_MAGICS or version != WAL_VERSION:
        raise WalError(f"WAL header magic {magic:#x} / version {version} not understood")
    return head[16:24]


def frame_offset(frame: int, page_size: int) -> int:
    """Byte offset of frame number `frame` (1-based) in the WAL file."""
    return WAL_HEADER + (frame - 1) * (FRAME_HEADER + page_size)


def latest_frames(fd: int, hdr: WalIndexHeader) -> dict[int, int]:
    """{page number: latest frame ≤ mxFrame holding it}, checking salts and the commit."""
    frames: dict[int, int] = {}
    ps = hdr.page_size
    last_truncate = 0
    for frame in range(1, hdr.mx_frame + 1):
        head = os.pread(fd, FRAME_HEADER, frame_offset(frame, ps))
        if len(head) < FRAME_HEADER or head[8:16] != hdr.salts:
            raise WalError(f"WAL frame {frame} of {hdr.mx_frame} is missing or of another WAL "
                           "generation")
        pgno, last_truncate = struct.unpack_from(">II", head)
        frames[pgno] = frame
    if hdr.mx_frame and last_truncate != hdr.n_page:
        raise WalError(f"WAL frame {hdr.mx_frame} is not the commit of a {hdr.n_page}-page "
                       f"database (nTruncate {last_truncate})")
    return frames
