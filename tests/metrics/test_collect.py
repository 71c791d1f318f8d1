"""What the collector adds from the continuous archiver, per source, next to the store's values."""

from __future__ import annotations

import json

from support.prom_text import Exposition
from tracker_backup import metrics
from tracker_backup.config import load_config
from tracker_backup.metrics import ArchiveHealth
from tracker_backup.store import parse_iso

P = metrics.PREFIX


def test_archive_health_is_per_source_and_widens_the_restorable_range(mcli, metrics_config):
    mcli("run", check=True)
    snap_time = parse_iso(json.loads(mcli("list", "--json", check=True).stdout)[0]["time"]).timestamp()
    config = load_config(metrics_config)
    archives = [ArchiveHealth("sqlite", 0.25, snap_time + 100, oldest_restorable=snap_time - 50,
                              newest_restorable=snap_time + 99.5),
                ArchiveHealth("mysql", 12.0, snap_time + 100, stalled=True)]
    m = Exposition(metrics.render_text(config, archives))
    assert m.by_label(P + "archive_lag_seconds", "source") == {"sqlite": 0.25, "mysql": 12.0}
    assert m.by_label(P + "archive_stalled", "source") == {"sqlite": 0, "mysql": 1}
    assert m.value(P + "archive_updated_timestamp_seconds", source="sqlite") == snap_time + 100
    assert m.value(P + "restorable_oldest_timestamp_seconds") == snap_time - 50
    assert m.value(P + "restorable_newest_timestamp_seconds") == snap_time + 99.5


def test_without_an_archiver_no_archive_metric_is_made_up(mcli, metrics_config):
    mcli("run", check=True)
    m = Exposition(metrics.render_text(load_config(metrics_config)))
    assert m.names() and not [n for n in m.names() if n.startswith(P + "archive")]


def test_a_store_that_does_not_exist_yet_reports_no_success_rather_than_failing(metrics_config):
    m = Exposition(metrics.render_text(load_config(metrics_config)))
    assert m.value(P + "last_success_timestamp_seconds") == 0
    assert m.value(P + "snapshots", state="good") == 0
    assert m.get(P + "last_run_success") is None and m.get(P + "backup_path_free_bytes") is None
