"""Which snapshots to keep: a pure function of the snapshots, the policy and now.

Rules (a snapshot is kept if any rule keeps it, as in restic and borgmatic):
- keep_last N: the N newest good snapshots, always;
- keep_days D: every good snapshot younger than D days (0 = rule off);
- keep_daily/weekly/monthly N: the newest good snapshot of each of the N most
  recent days/ISO weeks/months that have one.
"Newest" is by the store's sequence number, not the clock, so a clock that
went backwards cannot make the snapshot just taken look old. A snapshot from
the future (clock skew) is kept. Damaged snapshots are never counted and
never deleted here: they are left for the operator to inspect.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tracker_backup.config import RetentionConfig


@dataclass(frozen=True)
class Candidate:
    """What retention needs to know about one snapshot."""

    id: str
    time: datetime
    sequence: int
    good: bool


@dataclass
class Decision:
    """Keep or delete one snapshot, and why."""

    id: str
    keep: bool
    reasons: list[str] = field(default_factory=list)


def _buckets(good: Sequence[Candidate], count: int, key: Callable[[datetime], Hashable],
             label: str) -> dict[str, str]:
    kept: dict[str, str] = {}
    seen: list[Hashable] = []
    for cand in good:
        bucket = key(cand.time)
        if bucket in seen:
            continue
        if len(seen) >= count:
            break
        seen.append(bucket)
        kept[cand.id] = f"{label} {len(seen)}/{count}"
    return kept


def plan(candidates: Sequence[Candidate], policy: RetentionConfig, now: datetime) -> list[Decision]:
    """Decide every snapshot's fate; returned newest first."""
    ordered = sorted(candidates, key=lambda c: (c.sequence, c.id), reverse=True)
    good = [c for c in ordered if c.good]
    decisions = {c.id: Decision(c.id, keep=False) for c in ordered}

    for c in ordered:
        if not c.good:
            decisions[c.id].keep = True
            decisions[c.id].reasons.append("damaged: left for the operator, not counted")
    for n, c in enumerate(good[: policy.keep_last], 1):
        decisions[c.id].reasons.append(f"keep_last {n}/{policy.keep_last}")
    if policy.keep_days > 0:
        horizon = now - timedelta(days=policy.keep_days)
        for c in good:
            if c.time > now:
                decisions[c.id].reasons.append("dated in the future (clock skew): kept")
            elif c.time > horizon:
                decisions[c.id].reasons.append(f"younger than keep_days = {policy.keep_days}")
    rules = (
        (policy.keep_daily, lambda t: t.date(), "daily"),
        (policy.keep_weekly, lambda t: t.isocalendar()[:2], "weekly"),
        (policy.keep_monthly, lambda t: (t.year, t.month), "monthly"),
    )
    for count, key, label in rules:
        if count > 0:
            for snap_id, reason in _buckets(good, count, key, label).items():
                decisions[snap_id].reasons.append(reason)
    for d in decisions.values():
        if d.reasons and not d.keep:
            d.keep = True
        if not d.reasons:
            d.reasons.append("matched no keep rule")
    return [decisions[c.id] for c in ordered]
