"""Metrics of a long-running process (the continuous archiver): textfile and /metrics.

    live = LiveMetrics(config)          # serves /metrics when [metrics] listen is set
    every few seconds:  live.update(statuses)   # the archivers' ArchiverStatus objects
    at exit:            live.close()

`update` keeps the newest per-source health and rewrites the textfile; the
HTTP thread only reads that reference, never the archivers themselves, so a
scrape cannot race the archive loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from tracker_backup.config import Config
from tracker_backup.metrics import Exporter, MetricsServer, refresh, serve
from tracker_backup.metrics.collect import ArchiveHealth


class SourceStatus(Protocol):
    """What is read of an archiver's status (tracker_backup.archive.protocol.ArchiverStatus)."""

    source: str
    lag_seconds: float
    stalled: str | None


def archive_health(statuses: Iterable[SourceStatus], now: float | None = None) -> list[ArchiveHealth]:
    """Per-source health as of `now`: everything older than the lag is in the archive."""
    now = time.time() if now is None else now
    return [ArchiveHealth(source=st.source, lag_seconds=float(st.lag_seconds), updated=now,
                          stalled=bool(st.stalled), newest_restorable=now - float(st.lag_seconds))
            for st in statuses]


class LiveMetrics:
    """The archiver's metrics: the latest health, the textfile, the optional endpoint."""

    def __init__(self, config: Config):
        self.config = config
        self.exporter = Exporter(config)
        self.health: list[ArchiveHealth] = []
        self.server: MetricsServer | None = serve(config, lambda: self.health, self.exporter)

    def update(self, statuses: Iterable[SourceStatus]) -> None:
        """Take the archivers' current statuses; rewrite [metrics] textfile if configured."""
        self.health = archive_health(statuses)  # one reference swap: readers see old or new
        refresh(self.config, self.health, self.exporter)

    def close(self) -> None:
        """Stop serving /metrics (the textfile stays: its timestamps age in Prometheus)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
