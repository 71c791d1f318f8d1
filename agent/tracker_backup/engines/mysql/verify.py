"""`verify` of a stored dump: header, trailer, a CREATE TABLE per table, row counts."""

from __future__ import annotations

from pathlib import Path

from tracker_backup.artifacts import Artifact, iter_decompressed
from tracker_backup.engines.mysql.dump_scan import scan


def verify_stored(snapshot_dir: Path, source: dict, artifacts: list[Artifact], level: str,
                  scratch: Path) -> list[str]:
    """Re-read a stored dump: header, trailer, a CREATE TABLE per recorded table, row counts.

    No configuration is needed (and none is used): a restore drill needs a
    server, so `verify` checks the dump's structure; the run's manifest holds
    the restore drill's result when `verify = restore`.
    """
    del level, scratch  # the whole dump is always scanned; nothing is written
    problems = []
    expected_tables = source.get("tables", [])
    expected_counts = source.get("row_counts", {})
    for art in artifacts:
        try:
            found = scan(iter_decompressed(snapshot_dir / art.path, art.compression))
        except Exception as exc:  # noqa: BLE001 - a damaged file: report, do not crash
            problems.append(f"{art.path}: cannot be read: {type(exc).__name__}: {exc}")
            continue
        problems += [f"{art.path}: {p}" for p in found.problems(expected_tables)]
        counts = {t: found.row_counts.get(t, 0) for t in found.tables}
        if expected_counts and counts != expected_counts:
            problems.append(f"{art.path}: row counts {counts} differ from the manifest's "
                            f"{expected_counts}")
    return problems

