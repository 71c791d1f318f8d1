"""node_exporter's textfile collector reads what the agent writes (Debian's prometheus-node-exporter)."""

from __future__ import annotations

import urllib.request

from support.prom_text import Exposition


def scrape(url: str) -> Exposition:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return Exposition(resp.read().decode())


def test_node_exporter_serves_the_textfile_after_a_run_and_a_failure(mcli, textfile, node_exporter,
                                                                   storage):
    mcli("run", check=True)
    ours = Exposition(textfile.read_text())
    seen = scrape(node_exporter)
    assert seen.value("node_textfile_scrape_error") == 0
    for key, value in ours.samples.items():
        assert seen.samples.get(key) == value, key
    assert seen.types["tracker_backup_run_failures_total"] == "counter"
    db = storage / "tracker/lib/database/tracker.db"
    db.rename(db.with_suffix(".gone"))
    assert mcli("run").returncode != 0
    after = scrape(node_exporter)
    assert after.value("node_textfile_scrape_error") == 0
    assert after.value("tracker_backup_last_run_success") == 0
    assert after.value("tracker_backup_run_failures_total") == 1
