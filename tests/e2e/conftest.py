"""Fixtures of the end-to-end suite: the real .deb, installed in a booted Debian 12 (nspawn)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from e2e import nspawn

ROOT = Path(__file__).resolve().parents[2]


def _require_host() -> None:
    # Not a skip: the suite is part of ./scripts/test, which installs these tools as root.
    if os.geteuid() != 0:
        pytest.fail("the e2e suite needs root (systemd-nspawn, debootstrap)")
    missing = nspawn.missing_host_tools() + [t for t in ("dpkg-buildpackage", "make")
                                              if shutil.which(t, path=nspawn.CLEAN_ENV["PATH"]) is None]
    if missing:
        pytest.fail(f"missing host tools {missing}: run ./scripts/setup-test-env")


@pytest.fixture(scope="session")
def deb(tmp_path_factory) -> Path:
    """`make deb` into a private build dir: the package exactly as operators get it."""
    _require_host()
    work = tmp_path_factory.mktemp("deb")
    proc = subprocess.run(["make", "-s", "deb", f"BUILD_DIR={work}/build", f"DIST_DIR={work}/dist"],
                          cwd=ROOT, capture_output=True, text=True, env=nspawn.CLEAN_ENV, check=False)
    assert proc.returncode == 0, f"make deb failed:\n{proc.stdout}\n{proc.stderr}"
    debs = list((work / "dist").glob("tracker-backup_*_all.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@pytest.fixture(scope="module")
def container(deb: Path, tmp_path_factory):
    """A booted Debian 12 with the package installed by apt (dependencies from Debian)."""
    tree = nspawn.ensure_tree()
    work = tmp_path_factory.mktemp("nspawn")
    binds = {deb.parent: "/mnt/dist", ROOT / "tests": "/mnt/tests", Path("/etc/apt"): "/mnt/hostapt"}
    box = nspawn.Container(tree, work, binds).start()
    try:
        # The host's apt sources (its Debian mirror is the only network here).
        box.sh("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*; "
               "cp /mnt/hostapt/sources.list.d/*.sources /etc/apt/sources.list.d/ 2>/dev/null || true; "
               "[ ! -f /mnt/hostapt/sources.list ] || cp /mnt/hostapt/sources.list /etc/apt/; "
               "apt-get update -qq", timeout=300)
        box.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
               f"/mnt/dist/{deb.name}", timeout=600)
        yield box
    finally:
        box.stop()
