"""End to end: the hardened units write node_exporter's textfile under a booted systemd.

The package installed by apt in a Debian 12 container (systemd-nspawn); the
textfile's directory does not exist before: the generator's drop-in creates it
and lets ProtectSystem=strict units write it.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from support.prom_text import Exposition

pytestmark = pytest.mark.e2e

CONF = "/etc/tracker-backup/tracker-backup.conf"
TEXTFILE = "/var/lib/prometheus/node-exporter/tracker-backup.prom"


def config_text(files_root: str = "/opt/torrust/storage") -> str:
    return f"""[backup]
path = /srv/backups/tracker
[schedule]
enabled = no
[metrics]
textfile = {TEXTFILE}
[files]
root = {files_root}
include = tracker/etc/**
"""


def textfile(box) -> tuple[str, Exposition]:
    text = box.run(["cat", TEXTFILE]).stdout
    return text, Exposition(text)


@pytest.fixture(scope="module")
def box(container):
    container.sh("mkdir -p /opt/torrust/storage/tracker/etc; "
                 "echo '[core]' > /opt/torrust/storage/tracker/etc/tracker.toml; "
                 "rm -rf /var/lib/prometheus")
    container.write(CONF, config_text())
    container.run(["systemctl", "daemon-reload"])
    return container


def test_the_backup_unit_writes_the_textfile_into_a_directory_it_creates(box):
    box.run(["systemctl", "start", "tracker-backup.service"], timeout=300)
    modes = box.run(["stat", "-c", "%a %U %n", "/var/lib/prometheus",
                     "/var/lib/prometheus/node-exporter", TEXTFILE]).stdout.split("\n")
    assert modes[:3] == ["755 root /var/lib/prometheus", "755 root /var/lib/prometheus/node-exporter",
                         f"644 root {TEXTFILE}"], modes
    text, m = textfile(box)
    assert m.value("tracker_backup_last_run_success") == 1
    assert m.value("tracker_backup_snapshots", state="good") == 1
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus, scripts/test-packages.txt)"
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    journal = box.run(["journalctl", "--no-pager", "-u", "tracker-backup"]).stdout
    assert "metrics: could not" not in journal, journal[-2000:]


def test_the_drill_unit_writes_it_too(box):
    box.run(["systemctl", "start", "tracker-backup-drill.service"], timeout=300)
    _, m = textfile(box)
    assert m.value("tracker_backup_drill_last_run_success") == 1
    assert m.value("tracker_backup_drill_last_success_timestamp_seconds") > 0


def test_a_failed_run_under_the_unit_is_in_the_textfile(box):
    box.write(CONF, config_text(files_root="/opt/torrust/missing"))
    box.run(["systemctl", "daemon-reload"])
    proc = box.run(["systemctl", "start", "tracker-backup.service"], check=False, timeout=300)
    assert proc.returncode != 0
    _, m = textfile(box)
    assert m.value("tracker_backup_last_run_success") == 0
    assert m.value("tracker_backup_run_failures_total") == 1
    assert m.value("tracker_backup_last_success_timestamp_seconds") > 0  # the earlier one
    box.write(CONF, config_text())
    box.run(["systemctl", "daemon-reload"])
