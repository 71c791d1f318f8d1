"""The generator lets both hardened units write the textfile's directory, and creates it."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

from conftest import write_config
from tracker_backup import generator
from tracker_backup.config import load_config


def plan_and_dropins(tmp_path: Path, textfile: Path | None) -> dict[str, str]:
    metrics = f"[metrics]\ntextfile = {textfile}\n" if textfile else ""
    config = load_config(write_config(tmp_path / "tb.conf", f"[backup]\npath = {tmp_path / 'b'}\n"
                                                            f"{metrics}[files]\nroot = /srv\n"))
    out = tmp_path / "gen"
    generator.write_plan(generator.plan_for(config), out, record=tmp_path / "rec")
    return {unit: (out / f"{unit}.d" / generator.DROPIN).read_text()
            for unit in ("tracker-backup.service", "tracker-backup-drill.service")}


def test_both_units_may_write_the_textfile_directory_only_when_configured(tmp_path):
    textfile = tmp_path / "node exporter" / "tracker-backup.prom"
    for unit, text in plan_and_dropins(tmp_path, textfile).items():
        assert f'ReadWritePaths="-{textfile.parent}"' in text, unit
    (tmp_path / "off").mkdir()
    for unit, text in plan_and_dropins(tmp_path / "off", None).items():
        assert "install -d" not in text and "node exporter" not in text, unit


def exec_start_pre(text: str) -> list[str]:
    """The directory-creating ExecStartPre= as argv, the way systemd splits it ($$ → $)."""
    line = next(ln for ln in text.splitlines() if "install -d" in ln)
    command = line.split("=", 1)[1].lstrip("-+")
    return shlex.split(command.replace("$$", "$"))


def test_the_directory_is_created_0755_with_its_parents_and_an_existing_one_is_left_alone(tmp_path):
    textfile = tmp_path / "var/lib/prometheus/node-exporter/tracker-backup.prom"
    argv = exec_start_pre(plan_and_dropins(tmp_path, textfile)["tracker-backup.service"])
    subprocess.run(argv, check=True, timeout=30, preexec_fn=lambda: os.umask(0o077))
    for d in (tmp_path / "var/lib/prometheus", textfile.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d  # node_exporter's user can read
    textfile.parent.chmod(0o2775)
    subprocess.run(argv, check=True, timeout=30)
    assert stat.S_IMODE(textfile.parent.stat().st_mode) == 0o2775
