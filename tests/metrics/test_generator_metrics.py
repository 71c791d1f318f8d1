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


def archive_dropin(tmp_path: Path, metrics: str, mysql: str = "") -> str:
    db = tmp_path / "tracker.db"
    config = load_config(write_config(tmp_path / "a.conf", f"""[backup]
path = {tmp_path / 'b'}
{metrics}
[sqlite]
database = {db}
continuous = yes
{mysql}"""))
    out = tmp_path / "gen-archive"
    generator.write_plan(generator.plan_for(config), out, record=tmp_path / "rec")
    return (out / f"{generator.ARCHIVE_UNIT}.d" / generator.DROPIN).read_text()


def test_the_archiver_gets_the_loopback_only_when_it_serves_metrics(tmp_path):
    serving = archive_dropin(tmp_path, "[metrics]\nlisten = 127.0.0.1:9817")
    assert "PrivateNetwork=yes" not in serving
    assert serving.rstrip().endswith("IPAddressDeny=any\nIPAddressAllow=localhost")
    quiet = archive_dropin(tmp_path, "")
    assert "PrivateNetwork=yes" in quiet and "IPAddressAllow" not in quiet


def test_metrics_listen_does_not_narrow_a_network_mysql_needs(tmp_path):
    text = archive_dropin(tmp_path, "[metrics]\nlisten = 127.0.0.1:9817",
                          "[mysql]\ndatabase = torrust_tracker\nhost = db.example.org\n")
    assert "IPAddressDeny=\n" in text and "IPAddressDeny=any" not in text
