"""The shape of MANIFEST.json (docs/format.md), as types the code is checked against.

Engines add their own facts to their source entry (row counts, journal mode,
binlog position ...); the keys every entry has are typed here.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class ArtifactEntry(TypedDict):
    """One stored file (artifacts.Artifact.to_json)."""

    path: str
    source: str
    content: str
    compression: str
    bytes: int
    sha256: str
    raw_bytes: int


class SourceEntry(TypedDict):
    """One engine's part of a snapshot (contract.SourceResult.to_json), plus its own facts."""

    name: str
    kind: str
    origin: str
    method: str
    artifacts: list[str]
    seconds: NotRequired[float]


class Verification(TypedDict):
    level: str
    result: str
    at: str


class Manifest(TypedDict):
    """A whole MANIFEST.json."""

    format: int
    id: str
    sequence: int
    started: str
    finished: str
    duration_sec: float
    host: str
    agent_version: str
    config_file: str
    compression: str
    verification: Verification
    sources: dict[str, SourceEntry]
    artifacts: list[ArtifactEntry]


def source_entry(details: dict[str, Any], **keys: Any) -> SourceEntry:
    """An entry with the common keys first, then the engine's facts (as stored)."""
    return {**keys, **details}  # type: ignore[typeddict-item]
