"""`verify` of a stored SQLite copy: decompress to scratch, integrity, tables, row counts."""

from __future__ import annotations

from pathlib import Path

from tracker_backup.artifacts import Artifact, open_decompressed
from tracker_backup.engines.sqlite.check import check_database, stored_copy_problems


def verify_stored(snapshot_dir: Path, source: dict, artifacts: list[Artifact], level: str,
                  scratch: Path) -> list[str]:
    """Decompress a stored copy to scratch; integrity, tables and row counts as recorded."""
    from tracker_backup.engines.sqlite.pages.verify import is_pages, verify_pages

    if is_pages(source):
        return verify_pages(snapshot_dir, source, level, scratch)
    required_tables = tuple(source.get("required_tables", ()))
    problems = []
    for art in artifacts:
        target = scratch / Path(art.path).name.removesuffix(".zst")
        with open_decompressed(snapshot_dir / art.path, art.compression) as fh, \
                open(target, "wb") as out:
            while chunk := fh.read(1 << 20):
                out.write(chunk)
        check = check_database(target, level, required_tables)
        problems += stored_copy_problems(check, source.get("row_counts", {}), art.path)
        target.unlink(missing_ok=True)
    return problems
