"""Which artifacts a restore uses, checked before anything is touched.

A plan is made while the store lock is held: the snapshot is read, every
artifact of the chosen kinds is re-hashed against the manifest, and only then
does each kind's engine look at its target to say what it would replace.
"""

from __future__ import annotations

from pathlib import Path

from tracker_backup import engines
from tracker_backup.artifacts import Artifact
from tracker_backup.engines.contract import Part
from tracker_backup.errors import RunFailed, UsageError
from tracker_backup.store import Snapshot
from tracker_backup.verify import check_hashes


def parts_of(snap: Snapshot, kinds: tuple[str, ...]) -> list[Part]:
    """The snapshot's sources of the given kinds; raise if one asked for is absent."""
    if snap.problem or snap.manifest is None:
        raise RunFailed(f"snapshot {snap.id} is damaged: {snap.problem or 'no manifest'}")
    try:
        sources = snap.manifest["sources"]
        artifacts = [Artifact.from_json(a) for a in snap.manifest["artifacts"]]
    except (KeyError, TypeError) as exc:
        raise RunFailed(f"snapshot {snap.id}: MANIFEST.json is incomplete: {exc}") from None
    parts = []
    for name, source in sources.items():
        kind = source.get("kind", name)
        if kind in kinds:
            parts.append(Part(name, kind, source,
                              [a for a in artifacts if a.source == name]))
    missing = [k for k in kinds if k not in {p.kind for p in parts}]
    if missing and len(kinds) == 1:
        have = ", ".join(sorted({s.get("kind", n) for n, s in sources.items()})) or "nothing"
        raise UsageError(f"snapshot {snap.id} has no {missing[0]} backup (it holds: {have})")
    if not parts:
        raise UsageError(f"snapshot {snap.id} holds none of: {', '.join(kinds)}")
    order = engines.kinds()
    parts.sort(key=lambda p: order.index(p.kind) if p.kind in order else len(order))
    return parts


def verify_parts(snap: Snapshot, parts: list[Part]) -> None:
    """Re-hash every artifact to be used; raise RunFailed naming each damaged one."""
    problems = check_hashes(snap.path, [a for p in parts for a in p.artifacts])
    if problems:
        raise RunFailed(f"snapshot {snap.id} failed its checksums, nothing was restored: "
                        + "; ".join(problems))
    for part in parts:
        if not part.artifacts:
            raise RunFailed(f"snapshot {snap.id}: source {part.name} has no artifact")


def artifact_path(snap: Snapshot, art: Artifact) -> Path:
    """Where an artifact is stored; refuses manifest paths that leave the snapshot."""
    rel = Path(art.path)
    if rel.is_absolute() or ".." in rel.parts:
        raise RunFailed(f"snapshot {snap.id}: artifact path {art.path!r} leaves the snapshot")
    return snap.path / rel
