"""The Debian package itself: built from a clean clone, lintian-clean, every unit shipped."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from e2e import nspawn
from tracker_backup import __version__

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_make_deb_builds_the_versioned_package_from_a_clean_clone(tmp_path):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-local", str(ROOT), str(tmp_path / "clone")], check=True)
    subprocess.run(["git", "-C", str(tmp_path / "clone"), "checkout", "-q", head], check=True)
    proc = subprocess.run(["make", "-s", "deb"], cwd=tmp_path / "clone", capture_output=True, text=True,
                          env=nspawn.CLEAN_ENV, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "clone" / "dist" / f"tracker-backup_{__version__}_all.deb").is_file()


def test_package_ships_every_unit_generator_conffile_and_man_page(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for unit in (ROOT / "units").iterdir():
        if unit.name == "tracker-backup-generator":
            assert "/usr/lib/systemd/system-generators/tracker-backup-generator" in paths
        else:
            assert f"/lib/systemd/system/{unit.name}" in paths, unit.name
    assert {"/etc/tracker-backup/tracker-backup.conf", "/usr/bin/tracker-backup",
            "/usr/share/man/man8/tracker-backup.8.gz"} <= paths
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends", "Recommends", "Version"],
                            capture_output=True, text=True, check=True).stdout
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    names = {d.split()[0].split(":")[0] for d in depends.split(", ")}
    assert names == {"python3", "python3-pystemd", "python3-sdnotify", "python3-psutil", "python3-zstandard"}
    assert "Recommends: mariadb-client | default-mysql-client, zstd" in fields
    assert f"Version: {__version__}" in fields


def test_lintian_reports_no_errors_and_no_unexplained_warnings(deb):
    proc = subprocess.run(["lintian", "--info", "--pedantic", "--display-experimental", str(deb)],
                          capture_output=True, text=True, env=nspawn.CLEAN_ENV, timeout=600, check=False)
    tags = re.findall(r"^([EWIPX]): tracker-backup: (\S+)", proc.stdout, re.M)
    print(f"lintian: {tags or 'clean'}")
    assert not [t for t in tags if t[0] == "E"], proc.stdout
    explained = (ROOT / "docs" / "install.md").read_text()
    unexplained = [name for _, name in tags if name not in explained]
    assert unexplained == [], f"explain or fix in docs/install.md: {unexplained}\n{proc.stdout}"
