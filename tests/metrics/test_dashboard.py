"""The Grafana dashboard: valid JSON that provisioning loads, querying only metrics the agent emits."""

from __future__ import annotations

import json
import re

from conftest import ROOT
from tracker_backup.metrics import CATALOGUE, PREFIX

DASHBOARD = ROOT / "packaging/grafana/tracker-backup-dashboard.json"
PROVISIONING = ROOT / "packaging/grafana/tracker-backup-dashboards.yml"
EMITTED = {PREFIX + name for name in CATALOGUE}


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])  # collapsed rows hold their panels
    return out


def test_the_dashboard_is_json_with_what_file_provisioning_needs():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "tracker-backup" and dash["title"]
    assert isinstance(dash["schemaVersion"], int)
    assert "id" not in dash or dash["id"] is None  # provisioning assigns the id
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))


def test_every_panel_query_names_only_metrics_the_agent_emits():
    dash = json.loads(DASHBOARD.read_text())
    queried = set()
    graphs = [p for p in panels(dash) if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\btracker_backup_[a-z_]+", target["expr"]))
            assert names, f"{panel['title']}: {target['expr']}"
            assert names <= EMITTED, f"{panel['title']}: {names - EMITTED}"
            queried |= names
    # The metrics are all on the dashboard.
    for name in ("last_success_timestamp_seconds", "run_duration_seconds", "snapshot_bytes",
                 "snapshots", "archive_lag_seconds", "restorable_oldest_timestamp_seconds",
                 "drill_last_success_timestamp_seconds", "run_failures_total",
                 "backup_path_free_bytes"):
        assert PREFIX + name in queried, name


def test_queries_use_the_dashboards_data_source_and_host_variables():
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "tracker_backup_build_info" in variables["instance"]["definition"]
    for panel in (p for p in panels(dash) if p["type"] != "row"):
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], target["expr"]


def test_the_provisioning_example_points_at_the_folder_the_docs_name():
    text = PROVISIONING.read_text()
    assert "apiVersion: 1" in text and "type: file" in text
    path = re.search(r"path: (\S+)", text).group(1)
    assert path == "/etc/grafana/provisioning/dashboards/tracker-backup"
    assert "dashboards/tracker-backup" in (ROOT / "docs/monitoring.md").read_text()
