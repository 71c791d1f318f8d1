"""Which processes have a database (or its side files) open, by inode in /proc/*/fd."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tracker_backup.engines.sqlite.header import side_paths


@dataclass
class Holder:
    """A process that has one of the database's files open."""

    pid: int
    name: str
    path: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.name}) has {self.path} open"


def db_files(db: Path) -> list[Path]:
    """The database and whichever of its side files exist."""
    return [p for p in (db, *side_paths(db)) if os.path.lexists(p)]


def open_by(paths: list[Path]) -> list[Holder]:
    """Processes with any of `paths` open, found by device and inode in /proc/*/fd.

    Inodes, not names: a tracker in a container sees the file under another path.
    """
    wanted: dict[tuple[int, int], str] = {}
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        wanted[(st.st_dev, st.st_ino)] = str(p)
    found: list[Holder] = []
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in wanted:
                found.append(Holder(pid, _comm(pid), wanted[key]))
                break
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return "?"
