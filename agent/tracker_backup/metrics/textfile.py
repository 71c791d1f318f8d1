"""Atomic replacement of node_exporter's textfile-collector file.

node_exporter reads `*.prom` files in its directory whenever it is scraped,
so the file must switch from the old complete text to the new complete text
in one step: write a hidden temporary file in the same directory, fsync,
chmod 0644, rename over the target, fsync the directory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tracker_backup.artifacts import fsync_dir

FILE_MODE = 0o644  # node_exporter runs as its own user; the file holds no secret


def _tmp_name(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.tmp-{pid}")


def _remove_stale(path: Path) -> None:
    """Remove temporary files of writers that died before their rename."""
    for entry in path.parent.glob(f".{path.name}.tmp-*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                entry.unlink()
        except PermissionError:
            pass  # alive, someone else's


def write_textfile(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (readers see the old or the new file, whole)."""
    _remove_stale(path)
    tmp = _tmp_name(path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), FILE_MODE)  # the agent's umask is 077
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
