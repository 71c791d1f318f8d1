"""Which WAL frame holds each page of a pinned snapshot.

The WAL and wal-index formats are read by engines/sqlite/archive/wal.py
(shared with the continuous archiver); this module only builds the
page → latest-frame map for frames 1..mxFrame and checks that the frames
belong to the WAL generation the wal-index names.
"""

from __future__ import annotations

from tracker_backup.engines.sqlite.archive import wal
from tracker_backup.engines.sqlite.archive.wal import FRAME_HEADER, IndexHeader, frame_offset

__all__ = ["FRAME_HEADER", "WalError", "frame_offset", "latest_frames", "read_wal_index",
           "wal_salts"]


class WalError(Exception):
    """The WAL or wal-index is not in a state the page reader can use."""


def read_wal_index(shm_fd: int, shm_path: str) -> IndexHeader:
    """The wal-index header (caller holds the write lock, so it is stable).

    The caller keeps `shm_fd` open until its SQLite connections are closed:
    closing any descriptor of the -shm file would drop this process's POSIX
    locks on it, the read marks that pin the snapshot among them.
    """
    hdr = wal.read_index_header(shm_fd)
    if hdr is None:
        raise WalError(f"{shm_path}: wal-index header missing, uninitialised or inconsistent")
    return hdr


def wal_salts(wal_fd: int) -> tuple[int, int] | None:
    """(salt-1, salt-2) of the WAL file header, None for an empty WAL."""
    head = wal.wal_header(wal_fd)
    return None if head is None else (head[3], head[4])


def latest_frames(wal_fd: int, hdr: IndexHeader) -> dict[int, int]:
    """{page number: latest frame ≤ mxFrame holding it}, checking salts and the commit."""
    frames: dict[int, int] = {}
    last = None
    for frame in wal.read_frames(wal_fd, hdr.page_size, 1, hdr.mx_frame, with_pages=False):
        if (frame.salt1, frame.salt2) != hdr.salts:
            raise WalError(f"WAL frame {frame.index} of {hdr.mx_frame} belongs to another WAL "
                           "generation")
        frames[frame.pgno] = frame.index
        last = frame
    if hdr.mx_frame and (last is None or last.index != hdr.mx_frame):
        raise WalError(f"the WAL ends before frame {hdr.mx_frame}")
    if last is not None and last.n_truncate != hdr.n_page:
        raise WalError(f"WAL frame {hdr.mx_frame} is not the commit of a {hdr.n_page}-page "
                       f"database (nTruncate {last.n_truncate})")
    return frames
