"""What `check-config` finds by looking, beyond the syntax: the findings type and the
backup path's check (present and writable; its free space is space.py's).

Engines add their own findings (the SQLite database's header, journal mode and tables;
MySQL's privileges); check-config prints them all and fails on any problem.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Findings:
    """Problems fail check-config (exit 2); warnings and notes are printed only."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Findings, prefix: str = "") -> None:
        """Add another set of findings, each line prefixed (e.g. "[sqlite] ")."""
        self.problems += [prefix + p for p in other.problems]
        self.warnings += [prefix + w for w in other.warnings]
        self.notes += [prefix + n for n in other.notes]


def probe_writable(path: Path) -> str | None:
    """Create and remove a file in `path`; None if that worked, else why not."""
    try:
        fd, name = tempfile.mkstemp(prefix=".check-config-", dir=path)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)
    return None


def check_backup_path(path: Path, *, require_mountpoint: bool) -> Findings:
    """The backup path: present (or creatable), a directory, writable (probed)."""
    f = Findings()
    where = f"[backup] path = {path}"
    probe_dir = path
    if not path.exists():
        if require_mountpoint:
            f.problems.append(f"{where}: does not exist (require_mountpoint = yes: mount it)")
            return f
        probe_dir = path.parent
        if not probe_dir.is_dir():
            f.problems.append(f"{where}: neither it nor its parent {probe_dir} exists")
            return f
        f.notes.append(f"{where}: does not exist yet; the first run creates it")
    elif not path.is_dir():
        f.problems.append(f"{where}: is not a directory")
        return f
    elif require_mountpoint and not os.path.ismount(path):
        f.problems.append(f"{where}: is not a mount point (require_mountpoint = yes)")
    why_not = probe_writable(probe_dir)
    if why_not:
        f.problems.append(f"{where}: not writable ({why_not})")
        return f
    f.notes.append(f"{where}: writable" + ("" if probe_dir == path else f" (parent {probe_dir})"))
    return f
