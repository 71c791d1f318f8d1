"""Backup health as Prometheus metrics: textfile for node_exporter, stdout, /metrics.

Callers:
- every command that changes what the metrics say (run, prune, verify, drill)
  calls `refresh(config)` at its end, succeeded or failed;
- `tracker-backup metrics` prints `render_text(config)`;
- the continuous archiver keeps a `live.LiveMetrics(config)`, calls its
  `update()` every few seconds (after it rewrote its own status.json) and
  `close()` at exit; it serves `/metrics` when `[metrics] listen` is set.

Writing metrics never fails the command that asked: a problem is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tracker_backup.config import Config
from tracker_backup.metrics.address import parse_listen
from tracker_backup.metrics.collect import CATALOGUE, PREFIX, collect
from tracker_backup.metrics.exposition import render
from tracker_backup.metrics.server import MetricsServer, start_server
from tracker_backup.metrics.textfile import write_textfile

__all__ = ["CATALOGUE", "PREFIX", "Exporter", "MetricsServer", "refresh",
           "render_text", "serve"]
log = logging.getLogger(__name__)


class Exporter:
    """Metrics of one configuration; the schedule's interval is worked out once."""

    def __init__(self, config: Config):
        from tracker_backup.schedule_status import schedule_interval

        self.config = config
        self.interval = schedule_interval(config.schedule.on_calendar)

    def text(self) -> str:
        """The exposition text as of now."""
        return render(collect(self.config, interval=self.interval))

    def write(self, path: Path) -> bool:
        """Replace the textfile at `path`; False (and a warning logged) if that failed."""
        try:
            write_textfile(path, self.text())
        except OSError as exc:
            log.warning("metrics: could not write %s: %s", path, exc.strerror or exc)
            return False
        except Exception as exc:  # noqa: BLE001 - metrics never fail the command that asked
            log.warning("metrics: could not collect for %s: %s: %s", path, type(exc).__name__, exc)
            return False
        return True


def render_text(config: Config) -> str:
    """The metrics of `config` as Prometheus text (what `tracker-backup metrics` prints)."""
    return Exporter(config).text()


def refresh(config: Config, exporter: Exporter | None = None) -> bool:
    """Rewrite `[metrics] textfile` if configured; True if nothing was to do or it worked.

    A long-running caller passes its own `exporter` to avoid working out the
    schedule again on each refresh.
    """
    path = config.metrics.textfile
    if path is None:
        return True
    return (exporter or Exporter(config)).write(path)


def serve(config: Config, exporter: Exporter | None = None) -> MetricsServer | None:
    """Serve /metrics on `[metrics] listen` (None when not configured); stop() it when done."""
    if config.metrics.listen is None:
        return None
    exporter = exporter or Exporter(config)
    return start_server(parse_listen(config.metrics.listen), exporter.text)
