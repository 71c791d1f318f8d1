"""Which files of [files] root go into the archive, and which are left out and why.

Left out, with a log line: live paths other engines copy themselves (asked of
the registry: the configured SQLite database and its side files), anything an
engine says a raw copy would tear or make useless (other SQLite databases,
MySQL/MariaDB data directories), sockets, FIFOs and device nodes.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from functools import lru_cache
from pathlib import Path

from tracker_backup.engines import raw_copy_hazard
from tracker_backup.engines.files.config import FilesConfig
from tracker_backup.errors import SourceError

log = logging.getLogger(__name__)


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    """Translate a glob: `**` spans directories, `*` and `?` stay within one."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(relpath: str, patterns: tuple[str, ...]) -> bool:
    """True if `relpath` or one of its parent directories matches a glob."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(_glob_regex(p.rstrip("/")).match(c) for p in patterns for c in candidates)


class Selection:
    """Walks [files] root; `owned`: live paths other engines copy (path → why)."""

    def __init__(self, cfg: FilesConfig, owned: dict[str, str]):
        self.cfg = cfg
        self.owned = owned

    def _skip_reason(self, path: Path, st: os.stat_result) -> str | None:
        if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            return "socket or FIFO"
        if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
            return "device node"
        if not stat.S_ISREG(st.st_mode):
            return None
        return self.owned.get(str(path)) or raw_copy_hazard(path, is_dir=False)

    def select(self) -> tuple[list[tuple[str, Path]], list[dict]]:
        """Walk root: (relpath, path) to archive, and what was left out and why."""
        root = self.cfg.root
        if not root.is_dir():
            raise SourceError(f"files: root {root} does not exist or is not a directory")
        chosen: list[tuple[str, Path]] = []
        skipped: list[dict] = []
        added_dirs: set[str] = set()

        def add_parents(rel: str) -> None:
            parts = rel.split("/")[:-1]
            for n in range(1, len(parts) + 1):
                parent = "/".join(parts[:n])
                if parent not in added_dirs:
                    added_dirs.add(parent)
                    chosen.append((parent, root / parent))

        def on_error(exc: OSError) -> None:
            raise SourceError(f"files: cannot read directory {exc.filename}: {exc.strerror} "
                              "(fix its permissions or add it to [files] exclude)")

        for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
            here = Path(dirpath)
            keep_dirs = []
            for d in sorted(dirnames):
                full = here / d
                rel = full.relative_to(root).as_posix()
                if matches(rel, self.cfg.exclude):
                    continue
                if full.is_symlink():
                    filenames.append(d)  # archived as a link, never followed
                    continue
                reason = raw_copy_hazard(full, is_dir=True)
                if reason:
                    skipped.append({"path": rel, "reason": reason})
                    log.info("files: leaving out %s: %s", rel, reason)
                    continue
                keep_dirs.append(d)
                if matches(rel, self.cfg.include):
                    add_parents(rel)
                    if rel not in added_dirs:
                        added_dirs.add(rel)
                        chosen.append((rel, full))
            dirnames[:] = keep_dirs
            for f in sorted(filenames):
                full = here / f
                rel = full.relative_to(root).as_posix()
                if matches(rel, self.cfg.exclude) or not matches(rel, self.cfg.include):
                    continue
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue  # vanished between listing and looking: nothing to back up
                reason = self._skip_reason(full, st)
                if reason:
                    skipped.append({"path": rel, "reason": reason})
                    log.info("files: leaving out %s: %s", rel, reason)
                    continue
                add_parents(rel)
                chosen.append((rel, full))
        return chosen, skipped

