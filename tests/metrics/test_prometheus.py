"""A real Prometheus scrapes node_exporter's textfile of the agent and evaluates the shipped rules.

promtool's unit tests pin each rule's logic on made-up series; this checks the rules
against what the agent really exports, with the labels a real scrape adds: after a
failed run `TrackerBackupLastRunFailed` fires, a host never drilled has
`TrackerBackupDrillOverdue`, and both resolve after a good run and a drill.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from support.net import free_port
from support.polling import wait_for

PROMETHEUS = "/usr/bin/prometheus"
RULES = ROOT / "packaging/prometheus/tracker-backup.rules.yml"


@pytest.fixture
def prometheus(tmp_path, node_exporter):
    port = free_port()
    target = node_exporter.split("//", 1)[1].split("/", 1)[0]
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: tracker_backup
    static_configs:
      - targets: ["{target}"]
""")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def firing(api: str) -> set[str] | None:
    """Names of the firing alerts; None while Prometheus does not answer."""
    try:
        with urllib.request.urlopen(f"{api}/api/v1/alerts", timeout=5) as resp:
            alerts = json.loads(resp.read())["data"]["alerts"]
    except OSError:
        return None
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def test_the_shipped_rules_fire_and_resolve_on_what_the_agent_exports(mcli, storage, prometheus):
    mcli("run", check=True)
    db: Path = storage / "tracker/lib/database/tracker.db"
    db.rename(db.with_suffix(".gone"))
    assert mcli("run").returncode != 0
    wanted = {"TrackerBackupLastRunFailed", "TrackerBackupDrillOverdue"}
    wait_for(lambda: wanted <= (firing(prometheus) or set()), timeout=60,
             what="the failed run and the missing drill to fire", diagnose=lambda: firing(prometheus))
    now = firing(prometheus)
    assert now is not None and "TrackerBackupTooOld" not in now and "TrackerBackupPathSpaceLow" not in now, now
    db.with_suffix(".gone").rename(db)
    mcli("run", check=True)
    mcli("drill", check=True)
    wait_for(lambda: (now := firing(prometheus)) is not None and not now & wanted, timeout=60,
             what="both to resolve after a good run and a drill", diagnose=lambda: firing(prometheus))
