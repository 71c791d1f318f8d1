"""End to end: the hardened units write node_exporter's textfile under a booted systemd.

The package installed by apt in a Debian 12 container (systemd-nspawn); the
textfile's directory does not exist before: the generator's drop-in creates it
and lets ProtectSystem=strict units write it. Last, the archiver's unit serves
/metrics on the container's loopback ([metrics] listen) and writes the textfile.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from e2e.guest import DB, create_tracker_db, show
from support.polling import wait_for
from support.prom_text import Exposition

pytestmark = pytest.mark.e2e

CONF = "/etc/tracker-backup/tracker-backup.conf"
TEXTFILE = "/var/lib/prometheus/node-exporter/tracker-backup.prom"


def config_text(files_root: str = "/opt/torrust/storage", metrics: str = "", extra: str = "") -> str:
    return f"""{extra}[backup]
path = /srv/backups/tracker
[schedule]
enabled = no
[metrics]
textfile = {TEXTFILE}
{metrics}
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


ARCHIVE = "tracker-backup-archive.service"
SCRAPE = ("import sys, urllib.request; "
          "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9817/metrics', timeout=10)"
          ".read().decode())")


def test_the_archiver_unit_serves_metrics_on_the_loopback_and_writes_the_textfile(box):
    box.sh("mkdir -p /opt/torrust/storage/tracker/lib/database")
    create_tracker_db(box, rows=2000)
    box.write(CONF, config_text(metrics="listen = 127.0.0.1:9817",
                                extra=f"[sqlite]\ndatabase = {DB}\ncontinuous = yes\n"))
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "start", ARCHIVE], timeout=120)
    try:
        props = show(box, ARCHIVE, "PrivateNetwork", "IPAddressDeny", "IPAddressAllow", "ActiveState")
        assert props["PrivateNetwork"] == "no" and props["ActiveState"] == "active", props
        assert set(props["IPAddressDeny"].split()) == {"0.0.0.0/0", "::/0"}, props
        assert set(props["IPAddressAllow"].split()) == {"127.0.0.0/8", "::1/128"}, props
        body = wait_for(lambda: (r := box.run(["python3", "-c", SCRAPE], check=False)).returncode == 0
                        and "tracker_backup_archive_updated_timestamp_seconds" in r.stdout and r.stdout,
                        timeout=60, what="/metrics with the archiver's report")
        served = Exposition(body)
        assert served.value("tracker_backup_archive_enabled", source="sqlite") == 1
        assert served.value("tracker_backup_archive_stalled", source="sqlite") == 0
        m = wait_for(lambda: (m := textfile(box)[1]).get("tracker_backup_archive_updated_timestamp_seconds",
                                                         source="sqlite") and m,
                     timeout=60, what="the archiver's report in the textfile")
        assert m.value("tracker_backup_archive_lag_seconds", source="sqlite") < 60
    finally:
        box.run(["systemctl", "stop", ARCHIVE], timeout=120)
    assert box.run(["python3", "-c", SCRAPE], check=False).returncode != 0  # gone with it
