"""Which parts of the continuous archive retention may delete (docs/format.md, "Archive retention").

Pure planning plus a small apply step. The rule: nothing a kept base still
needs is ever deleted.

- The bases of a generation: its own `base-*` files and the kept good
  snapshots tied to it (`kept_bases`: generation id -> entry seqs).
- Its anchor: the oldest kept snapshot base, else its newest own base. Own
  bases older than the anchor, and segments ending at or before it, go.
- An older generation (not the newest) with no kept snapshot base goes when it
  ended before the oldest kept good snapshot began, or, when no snapshot is
  kept, when it ended more than `keep_days` ago (keep_days > 0).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tracker_backup.archive.store import (
    MAINTENANCE_LOCK,
    Generation,
    SourceArchive,
    maintenance_lock,
)
from tracker_backup.artifacts import fsync_dir
from tracker_backup.store import Snapshot

DAY = 86400.0


@dataclass(frozen=True)
class ArchiveDeletion:
    """One thing retention removes from the archive, and why."""

    path: Path
    kind: str  # segment | base | generation
    reason: str
    bytes: int

    def line(self) -> str:
        return f"archive {self.kind} {self.path.parent.name}/{self.path.name}: {self.reason}"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    try:
        return path.stat().st_size
    except OSError:
        return 0


def plan_prune(archive: SourceArchive, kept_bases: dict[str, list[int]],
               oldest_kept_snapshot: float | None, keep_days: int, now: float) -> list[ArchiveDeletion]:
    """What to delete (nothing when in doubt: a damaged generation is left alone)."""
    gens = archive.generations()
    out: list[ArchiveDeletion] = []
    for i, gen in enumerate(gens):
        newest = i == len(gens) - 1
        segs, problem = gen.segments()
        own = gen.bases()
        kept = sorted(kept_bases.get(gen.id, []))
        if not newest and not kept:
            ended = segs[-1].last_time if segs else max((b.time for b in own), default=None)
            if ended is not None and (
                    (oldest_kept_snapshot is not None and ended < oldest_kept_snapshot)
                    or (oldest_kept_snapshot is None and keep_days > 0
                        and ended < now - keep_days * DAY)):
                out.append(ArchiveDeletion(gen.path, "generation",
                                           "older generation no kept snapshot needs", _size(gen.path)))
                continue
        if problem:
            continue  # damaged: keep everything for the operator
        anchor = kept[0] if kept else (own[-1].seq if own else None)
        if anchor is None:
            continue
        for b in own:
            if b.seq < anchor:
                out.append(ArchiveDeletion(b.path, "base", f"older than the anchor (entry {anchor})",
                                           _size(b.path)))
        # The newest segment always stays, even when the anchor is past it (a run's snapshot
        # the archiver has not published up to yet): its trailer is where the archive goes on
        # from, and the PRUNED marker is the first seq of the first segment kept. Deleting every
        # segment left no marker, so the next published segment no longer followed entry 1's
        # chain and no reader accepted the generation (seen in CI, under load).
        for s in segs[:-1]:
            if s.last_seq <= anchor:
                out.append(ArchiveDeletion(s.path, "segment",
                                           f"entries {s.first_seq}..{s.last_seq} precede the anchor "
                                           f"(entry {anchor})", _size(s.path)))
    return out


PRUNE_WAIT = 120.0  # s a prune waits for a compaction in progress (merging takes seconds)


def prune_for(archive: SourceArchive, kept_bases: dict[str, list[int]], kept: list[Snapshot],
              keep_days: int, dry_run: bool) -> list[str]:
    """Plan and (unless `dry_run`) apply the prune, given the snapshots retention keeps and
    the entries their bases stand at; lines saying what went (or would go)."""
    started = [s.started.timestamp() for s in kept if s.good and s.started]
    if not archive.path.is_dir():
        return []
    # Planned and applied under the maintenance lock: the archiver's compaction waits.
    with maintenance_lock(archive.path, PRUNE_WAIT) as got:
        if not got:
            return [f"archive {archive.source}: not pruned this time: its compaction held "
                    f"{archive.path / MAINTENANCE_LOCK} for {PRUNE_WAIT:g} s (nothing deleted)"]
        plan = plan_prune(archive, kept_bases, min(started) if started else None, keep_days,
                          time.time())
        if not dry_run:
            apply_prune(plan)
    return [("would delete " if dry_run else "deleted ") + d.line() for d in plan]


def apply_prune(deletions: list[ArchiveDeletion]) -> int:
    """Delete what plan_prune chose; returns bytes freed. Generations are hidden first."""
    freed = 0
    # A generation's kept entries start after its last deleted segment: say so first.
    starts: dict[Path, tuple[int, str]] = {}
    for d in deletions:
        if d.kind == "segment":
            gen = Generation(d.path.parent)
            segs, _ = gen.segments()
            gone = {x.path for x in deletions}
            rest = [x for x in segs if x.path not in gone]
            if rest:
                starts[gen.path] = (rest[0].first_seq, rest[0].trailer["chain_before"])
    for path, (first, chain) in starts.items():
        Generation(path).mark_pruned(first, chain)
    for d in deletions:
        if d.kind == "generation":
            hidden = d.path.with_name(f".tmp-deleting-{d.path.name}")
            os.rename(d.path, hidden)
            fsync_dir(d.path.parent)
            shutil.rmtree(hidden, ignore_errors=True)
        elif d.kind == "base":
            gen = Generation(d.path.parent)
            for b in gen.bases():
                if b.path == d.path:
                    gen.delete_base(b)
        else:
            d.path.unlink(missing_ok=True)
            fsync_dir(d.path.parent)
        freed += d.bytes
    return freed
