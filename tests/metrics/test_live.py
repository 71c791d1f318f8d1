"""The archiver's live metrics: per-source health from real ArchiverStatus objects, textfile, /metrics."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from support.prom_text import Exposition
from tracker_backup.archive.protocol import ArchiverStatus
from tracker_backup.config import load_config
from tracker_backup.metrics.live import LiveMetrics, archive_health

P = "tracker_backup_"


def test_statuses_become_per_source_health_with_the_newest_restorable_point():
    health = archive_health([ArchiverStatus("sqlite", lag_seconds=0.4),
                             ArchiverStatus("mysql", lag_seconds=30, stalled="disk full")], now=1000.0)
    assert [(h.source, h.lag_seconds, h.stalled, h.newest_restorable, h.updated) for h in health] == [
        ("sqlite", 0.4, False, 999.6, 1000.0), ("mysql", 30.0, True, 970.0, 1000.0)]


def test_each_update_rewrites_the_textfile_and_the_endpoint_serves_the_same(mcli, tmp_path, textfile):
    mcli("run", check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "live.conf"
    conf.write_text(mcli.config.read_text().replace("[metrics]\n", f"[metrics]\nlisten = 127.0.0.1:{port}\n"))
    live = LiveMetrics(load_config(conf))
    try:
        live.update([ArchiverStatus("sqlite", lag_seconds=0.5)])
        assert Exposition(textfile.read_text()).value(P + "archive_lag_seconds", source="sqlite") == 0.5
        live.update([ArchiverStatus("sqlite", lag_seconds=75.0, stalled="No space left on device")])
        m = Exposition(textfile.read_text())
        assert m.value(P + "archive_lag_seconds", source="sqlite") == 75
        assert m.value(P + "archive_stalled", source="sqlite") == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            served = Exposition(resp.read().decode())
        assert served.value(P + "archive_lag_seconds", source="sqlite") == 75
        assert served.value(P + "last_run_success") == 1
    finally:
        live.close()
    with pytest.raises(ConnectionRefusedError):  # closed: nobody listens any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
