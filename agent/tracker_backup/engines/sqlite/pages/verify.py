"""`verify`, restore and export of pages-layout snapshots: objects, reassembly, check."""

from __future__ import annotations

from pathlib import Path

from tracker_backup.engines.sqlite.check import check_database, stored_copy_problems
from tracker_backup.engines.sqlite.pages.index import PageIndex, PageIndexError, read_index_file
from tracker_backup.engines.sqlite.pages.objects import ObjectStore
from tracker_backup.engines.sqlite.pages.reassemble import (
    ReassembleError,
    check_objects,
    reassemble_to,
)

# Object results of this process (store directory, name) → problem or None: `verify --all`
# checks an object shared by many snapshots once and still reports it for each of them.
_CHECKED: dict[Path, dict[str, str | None]] = {}


def is_pages(source: dict) -> bool:
    """True for a manifest entry of a pages-layout SQLite snapshot."""
    return source.get("layout") == "pages"


def store_for(snapshot_dir: Path) -> ObjectStore:
    """The page store beside a snapshot directory."""
    return ObjectStore(Path(snapshot_dir).parent / "pages")


def load_index(snapshot_dir: Path, source: dict) -> PageIndex:
    """The snapshot's page index; PageIndexError if it is missing or damaged."""
    rel = source.get("index")
    if not isinstance(rel, str):
        raise PageIndexError(f"{snapshot_dir.name}: the manifest names no page index")
    return read_index_file(snapshot_dir / rel, f"{snapshot_dir.name}/{rel}")


def materialize(snapshot_dir: Path, source: dict, target: Path) -> int:
    """Reassemble the snapshot's database into new file `target` (fsynced); its size.

    ReassembleError / PageIndexError name what is damaged; `target` is removed then.
    """
    index = load_index(snapshot_dir, source)
    store = store_for(snapshot_dir)
    reassemble_to(store, index, target, checked=_CHECKED.setdefault(store.objects, {}))
    return index.page_count * index.page_size


def verify_pages(snapshot_dir: Path, source: dict, level: str, scratch: Path) -> list[str]:
    """Every referenced object (decompressed, SHA-256, page digests), then the reassembled
    database: PRAGMA integrity_check/quick_check, tables and row counts as recorded."""
    try:
        index = load_index(snapshot_dir, source)
    except PageIndexError as exc:
        return [f"sqlite: {exc}"]
    store = store_for(snapshot_dir)
    checked = _CHECKED.setdefault(store.objects, {})
    problems = [f"sqlite: {p}" for p in check_objects(store, index, checked)]
    if problems:
        return problems
    target = scratch / (Path(source.get("origin") or "database.db").name or "database.db")
    try:
        reassemble_to(store, index, target, checked=checked)
    except ReassembleError as exc:
        return [f"sqlite: {exc}"]
    try:
        check = check_database(target, level, tuple(source.get("required_tables", ())))
    finally:
        target.unlink(missing_ok=True)
    return stored_copy_problems(check, source.get("row_counts", {}), "sqlite",
                                " of the reassembled database")
