"""A real Prometheus scrapes node_exporter's textfile of the agent and evaluates the shipped rules.

promtool's unit tests pin each rule's logic on made-up series; this checks the rules
against what the agent really exports, with the labels a real scrape adds: after a
failed run `TrackerBackupLastRunFailed` fires, a host never drilled has
`TrackerBackupDrillOverdue`, and both resolve after a good run and a drill.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

PROMETHEUS = "/usr/bin/prometheus"
RULES = ROOT / "packaging/prometheus/tracker-backup.rules.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def wait_until(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_the_shipped_rules_fire_and_resolve_on_what_the_agent_exports(mcli, storage, prometheus):
    mcli("run", check=True)
    db: Path = storage / "tracker/lib/database/tracker.db"
    db.rename(db.with_suffix(".gone"))
    assert mcli("run").returncode != 0
    wanted = {"TrackerBackupLastRunFailed", "TrackerBackupDrillOverdue"}
    wait_until(lambda: wanted <= (firing(prometheus) or set()),
               "the failed run and the missing drill to fire")
    now = firing(prometheus)
    assert now is not None and "TrackerBackupTooOld" not in now and "TrackerBackupPathSpaceLow" not in now, now
    db.with_suffix(".gone").rename(db)
    mcli("run", check=True)
    mcli("drill", check=True)
    wait_until(lambda: (now := firing(prometheus)) is not None and not now & wanted,
               "both to resolve after a good run and a drill")
