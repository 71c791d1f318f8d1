"""The interface every source implements, and what it is given to work with.

A source knows how to make a consistent copy of one thing and check it; it
does not know the store's layout beyond "write your artifacts in this
directory" (RunContext.staging), and it never talks to systemd directly: it
reports progress through RunContext.progress.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tracker_backup.artifacts import Artifact
from tracker_backup.config import BackupConfig
from tracker_backup.throttle import RateLimiter


@dataclass
class RunContext:
    """What a source may use during one backup run."""

    staging: Path  # write artifacts here (relative paths become manifest paths)
    backup: BackupConfig
    limiter: RateLimiter
    progress: Callable[[str], None] = lambda text: None
    # Durable note of a stopped tracker (see window.py); None when not kept.
    window_journal: Path | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("tracker_backup"))


@dataclass
class SourceResult:
    """What a source made: artifacts plus facts for the manifest."""

    name: str
    kind: str
    origin: str
    method: str
    artifacts: list[Artifact]
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "origin": self.origin,
                "method": self.method, **self.details,
                "artifacts": [a.path for a in self.artifacts]}


class Source(Protocol):
    """One kind of thing to back up."""

    kind: str  # sqlite | mysql | files
    name: str  # unique in a snapshot; the manifest key

    def backup(self, ctx: RunContext) -> SourceResult:
        """Make a consistent, checked copy into ctx.staging; raise SourceError on failure."""
        ...


# Each source module also provides, for snapshots already stored (no config needed):
#   verify_stored(snapshot_dir, source_manifest, artifacts, level, scratch) -> list[str]
# returning the problems found beyond the artifacts' hashes (empty = good).
