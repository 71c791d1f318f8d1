"""tracker-backup-archive.service as systemd reads it (offline)."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

UNITS = Path(__file__).resolve().parents[2] / "units"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_COLORS": "0"}
NAME = "tracker-backup-archive.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / NAME)
    return parser


def test_archive_service_exposure_is_at_most_2_0():
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", NAME],
                          cwd=UNITS, capture_output=True, text=True, env=ENV, timeout=60)
    m = re.search(rf"Overall exposure level for {re.escape(NAME)}: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    print(f"systemd-analyze security --offline {NAME}: {m.group(1)}")
    assert float(m.group(1)) <= 2.0


def test_archive_service_notifies_is_watched_and_restarts_on_failure_but_not_on_bad_config():
    s = _unit()["Service"]
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["WatchdogSec"] and s["Restart"] == "on-failure"
    assert s["RestartPreventExitStatus"] == "2"  # exit 2 = configuration: restarting cannot help
    assert s["ExecStart"] == "/usr/bin/tracker-backup archive"
    assert "docker.service" in _unit()["Unit"]["After"]
    assert s["ProtectSystem"] == "strict" and s["NoNewPrivileges"] == "yes"
