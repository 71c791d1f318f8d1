"""`verify` of a stored files archive: it must parse and hold the recorded members."""

from __future__ import annotations

import tarfile
from pathlib import Path

from tracker_backup.artifacts import Artifact, open_decompressed


def verify_stored(snapshot_dir: Path, source: dict, artifacts: list[Artifact], level: str,
                  scratch: Path) -> list[str]:
    """Read the whole archive: it must parse and hold the recorded number of members."""
    problems = []
    for art in artifacts:
        count = 0
        try:
            with open_decompressed(snapshot_dir / art.path, art.compression) as fh, \
                    tarfile.open(fileobj=fh, mode="r|") as tar:
                for member in tar:
                    count += 1
                    if member.isreg():
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            while extracted.read(1 << 20):
                                pass
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            problems.append(f"{art.path}: archive unreadable: {exc}")
            continue
        expected = source.get("members")
        if expected is not None and count != expected:
            problems.append(f"{art.path}: {count} members, the manifest says {expected}")
    return problems
