"""Free space a backup run needs on the backup path, versus what is free: said before a run."""

from __future__ import annotations

from dataclasses import dataclass, field

from tracker_backup.config import Config
from tracker_backup.humanize import human_bytes


@dataclass
class SpaceReport:
    """Needed (sum of the engines that can say) and free bytes on the backup path."""

    needed: int = 0
    free: int | None = None  # None: the backup path does not exist yet
    reasons: list[str] = field(default_factory=list)

    @property
    def short(self) -> bool:
        return self.free is not None and self.free < self.needed

    def line(self) -> str:
        free = "unknown (the path does not exist yet)" if self.free is None \
            else human_bytes(self.free)
        why = "; ".join(self.reasons) or "no engine can estimate it"
        return f"free space: a run needs about {human_bytes(self.needed)} ({why}), {free} free"


def space_report(config: Config) -> SpaceReport:
    """Ask every configured engine what a run needs; measure what the backup path has free."""
    from tracker_backup import engines
    from tracker_backup.store import free_bytes

    report = SpaceReport()
    for engine in engines.configured(config):
        said = engine.space_needed(config)
        if said is not None:
            report.needed += said[0]
            report.reasons.append(f"{engine.kind}: {said[1]}")
    path = config.backup.path
    while not path.exists() and path != path.parent:
        path = path.parent  # a path to be created: its filesystem is the parent's
    report.free = free_bytes(path) if path.exists() else None
    return report
