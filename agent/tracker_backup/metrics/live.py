"""Metrics of the long-running continuous archiver: the textfile and /metrics.

    live = LiveMetrics(config)    # serves /metrics when [metrics] listen is set
    every few seconds:  live.update()     # after the archivers rewrote their status.json
    at exit:            live.close()

Both read what every other command reads (the store and the archivers'
status.json), so a scrape never touches the archive loop's objects.
"""

from __future__ import annotations

from tracker_backup.config import Config
from tracker_backup.errors import RunFailed
from tracker_backup.metrics import Exporter, MetricsServer, refresh, serve


class LiveMetrics:
    """The archiver's metrics: one exporter, the textfile, the optional endpoint."""

    def __init__(self, config: Config):
        self.config = config
        self.exporter = Exporter(config)
        try:
            self.server: MetricsServer | None = serve(config, self.exporter)
        except OSError as exc:
            raise RunFailed(f"{config.file}: [metrics] listen = {config.metrics.listen}: "
                            f"cannot listen there: {exc.strerror or exc}") from None

    def update(self) -> None:
        """Rewrite [metrics] textfile, if configured (never raises: a warning is logged)."""
        refresh(self.config, self.exporter)

    def close(self) -> None:
        """Stop serving /metrics (the textfile stays: its timestamps age in Prometheus)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
