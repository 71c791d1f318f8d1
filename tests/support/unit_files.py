"""The unit files in units/ as systemd reads them, offline (no systemd runs on the test host)."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

UNITS = Path(__file__).resolve().parents[2] / "units"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_COLORS": "0"}


def read_unit(name: str) -> configparser.ConfigParser:
    """units/NAME parsed (keys keep their case; repeated keys: the last wins)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


def analyze(*args: str) -> subprocess.CompletedProcess:
    """`systemd-analyze ARGS` run in units/ (so unit names resolve to the files there)."""
    return subprocess.run(["systemd-analyze", *args], cwd=UNITS, capture_output=True, text=True,
                          env=ENV, timeout=60)


def exposure(name: str) -> float:
    """The overall exposure level `systemd-analyze security --offline` gives the unit."""
    proc = analyze("security", "--offline=yes", "--no-pager", name)
    m = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))
