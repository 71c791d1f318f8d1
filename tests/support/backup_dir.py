"""A backup path as the tests read it: the published snapshots and their manifests.

The snapshot-ID pattern is the tests' own copy of docs/format.md's, not the agent's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ID_RE = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?$")


def published(backups: Path) -> list[Path]:
    """The published snapshot directories (named like an ID), oldest name first."""
    return sorted(p for p in backups.iterdir() if ID_RE.match(p.name)) if backups.is_dir() else []


def read_manifest(snap: Path) -> dict:
    """A snapshot's MANIFEST.json."""
    return json.loads((snap / "MANIFEST.json").read_text())
