"""Garbage collection of the page store: mark from every index, sweep the rest.

Runs under the backup path's lock, after retention has removed snapshots
(their indexes first). An object is deleted only if no index in any snapshot
directory (or staging directory) names it and it is older than the newest
index; if any index cannot be read, nothing is deleted. Each deletion is
independent, so a SIGKILL anywhere leaves only unreferenced objects behind,
which the next collection removes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tracker_backup.engines.sqlite.pages.index import PageIndexError, read_index_file
from tracker_backup.engines.sqlite.pages.objects import ObjectStore

INDEX_GLOB = "sqlite/*.pages"
STORE_DIR = "pages"


@dataclass
class GcResult:
    """What one collection found and did (or, in a dry run, would do)."""

    referenced: int = 0
    deleted: int = 0
    freed_bytes: int = 0
    kept_young: int = 0  # unreferenced but newer than the newest index: left alone
    problem: str | None = None  # why nothing was deleted
    deleted_names: list[str] = field(default_factory=list)


def index_files(backup_path: Path, excluding: Iterable[str] = ()) -> list[Path]:
    """Every page index in snapshot and staging directories (not those being deleted)."""
    from tracker_backup.store import ID_RE, STAGING_PREFIX

    skip = set(excluding)
    found = []
    if not backup_path.is_dir():
        return found
    for entry in backup_path.iterdir():
        name = entry.name
        live = ID_RE.match(name) or (name.startswith(STAGING_PREFIX)
                                     and ID_RE.match(name.removeprefix(STAGING_PREFIX)))
        if live and name not in skip and entry.is_dir():
            found.extend(entry.glob(INDEX_GLOB))
    return found


def marked(backup_path: Path, excluding: Iterable[str] = ()) -> tuple[set[str], float, str | None]:
    """(names referenced by any index, newest index mtime, problem)."""
    names: set[str] = set()
    newest = 0.0
    for path in index_files(backup_path, excluding):
        try:
            newest = max(newest, path.stat().st_mtime)
            names |= read_index_file(path).object_names()
        except (OSError, PageIndexError) as exc:
            return names, newest, f"{path}: {exc}"
    return names, newest, None


def collect(backup_path: Path, *, dry_run: bool = False, excluding: Iterable[str] = (),
            keep_young: bool = True) -> GcResult:
    """Delete (or count, if dry_run) objects no index references. Lock must be held.

    `excluding` names snapshots to treat as already deleted (for prune --dry-run).
    keep_young=False also sweeps objects newer than the newest index: only right
    after the lock was taken and staging debris removed, when no run can need them.
    """
    store = ObjectStore(backup_path / STORE_DIR)
    result = GcResult()
    if not store.objects.is_dir():
        return result
    keep, newest, problem = marked(backup_path, excluding)
    result.referenced = len(keep)
    if problem:
        result.problem = f"page store not collected: cannot read a page index ({problem})"
        return result
    for tmp in list(store.temporaries()):
        result.freed_bytes += _size(tmp)
        if not dry_run:
            tmp.unlink(missing_ok=True)
    for name in list(store.names()):
        if name in keep:
            continue
        path = store.path(name)
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if keep_young and newest and st.st_mtime > newest:
            result.kept_young += 1  # written after the newest index: a run may need it
            continue
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
        result.deleted += 1
        result.freed_bytes += st.st_size
        result.deleted_names.append(name)
    return result


def store_bytes(backup_path: Path) -> tuple[int, int]:
    """(objects, bytes) in the page store."""
    store = ObjectStore(backup_path / STORE_DIR)
    count = size = 0
    for name in store.names():
        count += 1
        size += store.size(name)
    return count, size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
