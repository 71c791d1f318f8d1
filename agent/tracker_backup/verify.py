"""Verification of stored snapshots: hashes first, then each artifact's content.

Content checks go to the engine of the kind recorded in the manifest, so a
snapshot can be verified without (or with a different) configuration.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tracker_backup import engines
from tracker_backup.artifacts import Artifact, hash_file
from tracker_backup.store import Snapshot


def check_hashes(snapshot_dir: Path, artifacts: list[Artifact]) -> list[str]:
    """Every artifact present with the recorded size and sha256."""
    problems = []
    for art in artifacts:
        path = snapshot_dir / art.path
        try:
            size, digest = hash_file(path)
        except FileNotFoundError:
            problems.append(f"{art.path}: missing")
            continue
        except OSError as exc:
            problems.append(f"{art.path}: unreadable: {exc.strerror}")
            continue
        if size != art.bytes:
            problems.append(f"{art.path}: {size} bytes, the manifest says {art.bytes}")
        elif digest != art.sha256:
            problems.append(f"{art.path}: sha256 {digest} differs from the manifest's "
                            f"{art.sha256} (the file is damaged)")
    return problems


def verify_snapshot(snap: Snapshot, level: str, scratch_parent: Path | None = None) -> list[str]:
    """All problems with a stored snapshot (empty list = verified)."""
    if snap.problem or snap.manifest is None:
        return [snap.problem or "no manifest"]
    manifest = snap.manifest
    try:
        artifacts = [Artifact.from_json(a) for a in manifest["artifacts"]]
        sources = manifest["sources"]
    except (KeyError, TypeError) as exc:
        return [f"MANIFEST.json is incomplete: {exc}"]
    problems = check_hashes(snap.path, artifacts)
    if problems:
        return problems  # content checks on damaged bytes only add noise
    scratch = Path(tempfile.mkdtemp(prefix=".staging-verify-", dir=scratch_parent))
    try:
        for name, source in sources.items():
            kind = source.get("kind", name)
            engine = engines.get(kind)
            if engine is None:
                problems.append(f"source {name}: unknown kind {kind!r}")
                continue
            mine = [a for a in artifacts if a.source == name]
            problems += [f"{name}: {p}"
                         for p in engine.verify_stored(snap.path, source, mine, level, scratch)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return problems
