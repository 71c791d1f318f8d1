"""The shipped alert rules: valid for promtool, each alert fires and stays quiet as meant."""

from __future__ import annotations

import re
import shutil
import subprocess

from conftest import ROOT
from tracker_backup.metrics import CATALOGUE, PREFIX

RULES = ROOT / "packaging/prometheus/tracker-backup.rules.yml"
RULE_TESTS = (ROOT / "tests/metrics/tracker-backup.rules.test.yml",
              ROOT / "tests/metrics/tracker-backup-drill.rules.test.yml")  # hourly evaluation
ALERTS = ("TrackerBackupTooOld", "TrackerBackupLastRunFailed", "TrackerBackupArchiveLagging",
          "TrackerBackupArchiverSilent", "TrackerBackupDrillOverdue", "TrackerBackupPathSpaceLow",
          "TrackerBackupDamagedSnapshot")


def promtool_run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules_file(promtool):
    proc = promtool_run(promtool, "check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def test_every_alert_fires_and_stays_quiet_in_promtool_unit_tests(promtool):
    proc = promtool_run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = "".join(t.read_text() for t in RULE_TESTS)
    for alert in ALERTS:
        # Each alert has an evaluation expecting no alert and one expecting it to fire.
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts: \[\]", tests), alert
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels", tests), alert


def test_the_unit_tests_fail_when_a_threshold_is_changed(promtool, tmp_path):
    """The promtool tests really pin the thresholds: 9 days instead of 8 is caught."""
    rules = tmp_path / "packaging/prometheus/tracker-backup.rules.yml"
    rules.parent.mkdir(parents=True)
    text = RULES.read_text()
    assert "> 8 * 86400" in text
    rules.write_text(text.replace("> 8 * 86400", "> 9 * 86400"))
    tests = tmp_path / "tests/metrics" / RULE_TESTS[1].name
    tests.parent.mkdir(parents=True)
    shutil.copy(RULE_TESTS[1], tests)
    proc = promtool_run(promtool, "test", "rules", str(tests))
    assert proc.returncode != 0 and "TrackerBackupDrillOverdue" in proc.stdout + proc.stderr


def test_every_metric_the_rules_use_is_one_the_agent_emits():
    used = set(re.findall(r"\btracker_backup_[a-z_]+", RULES.read_text()))
    assert used and used <= {PREFIX + name for name in CATALOGUE}, used - {PREFIX + n for n in CATALOGUE}


def test_the_docs_name_the_rules_file_and_every_alert():
    docs = (ROOT / "docs/monitoring.md").read_text()
    assert "packaging/prometheus/tracker-backup.rules.yml" in docs
    for alert in ALERTS:
        assert alert in docs, alert
