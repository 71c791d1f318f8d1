"""Fixtures of the end-to-end suite: the real .deb, installed in a booted Debian 12 and Debian 13.

Every test that uses `container` (or `release`) runs once per release in E2E_RELEASES
(test ids `[bookworm]`, `[trixie]`; `TRACKER_BACKUP_E2E_RELEASES=bookworm` runs one).
On the host's release the .deb is the one `make deb` builds on the host; on another
release it is built by `make deb` inside that release's cached build tree, so each
release installs a package built by its own toolchain.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import nspawn

ROOT = Path(__file__).resolve().parents[2]
E2E_RELEASES = [r.strip() for r in
                os.environ.get("TRACKER_BACKUP_E2E_RELEASES", ",".join(nspawn.RELEASES)).split(",")
                if r.strip()]
# Inside a container (outside /tmp, which Debian 13's systemd mounts a tmpfs over).
SRC, WORK = "/mnt/src", "/mnt/work"


def _require_host() -> None:
    # Not a skip: the suite is part of ./scripts/test, which installs these tools as root.
    if os.geteuid() != 0:
        pytest.fail("the e2e suite needs root (systemd-nspawn, debootstrap)")
    missing = nspawn.missing_host_tools() + [t for t in ("dpkg-buildpackage", "make")
                                              if shutil.which(t, path=nspawn.CLEAN_ENV["PATH"]) is None]
    if missing:
        pytest.fail(f"missing host tools {missing}: run ./scripts/setup-test-env")


def make_deb(run, src: str, work: str, dist: Path) -> Path:
    """`make deb` with `run` (host or container) into work/build and work/dist; the .deb on the host."""
    proc = run(["make", "-s", "-C", src, "deb", f"BUILD_DIR={work}/build", f"DIST_DIR={work}/dist"])
    assert proc.returncode == 0, f"make deb failed:\n{proc.stdout}\n{proc.stderr}"
    debs = list(dist.glob("tracker-backup_*_all.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@pytest.fixture(scope="session")
def deb(tmp_path_factory) -> Path:
    """`make deb` on the host into a private build dir: the package exactly as operators get it."""
    _require_host()
    work = tmp_path_factory.mktemp("deb")

    def run(argv):
        return subprocess.run(argv, capture_output=True, text=True, env=nspawn.CLEAN_ENV, check=False)

    return make_deb(run, str(ROOT), str(work), work / "dist")


@pytest.fixture(scope="session", params=E2E_RELEASES)
def release(request) -> str:
    """The Debian release (codename) a test runs on."""
    return nspawn._check_release(request.param)


@pytest.fixture(scope="session")
def build_box(release, tmp_path_factory):
    """A booted build tree of `release` (toolchain + lintian), with the sources at /mnt/src
    (read-only) and a scratch dir at /mnt/work (host path: build_box.workdir)."""
    _require_host()
    tree = nspawn.ensure_tree(release=release, build=True)
    work = tmp_path_factory.mktemp(f"build-{release}")
    box = nspawn.Container(tree, work, binds={ROOT: SRC}, rw_binds={work: WORK}, release=release).start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="session")
def release_deb(release, request) -> Path:
    """The .deb installed on `release`: the host's build on the host's release, else one
    built by `make deb` in that release's build tree."""
    if release == nspawn.host_release():
        return request.getfixturevalue("deb")
    box = request.getfixturevalue("build_box")
    return make_deb(lambda argv: box.run(argv, check=False, timeout=600), SRC, WORK, box.workdir / "dist")


@contextlib.contextmanager
def installed_box(release: str, release_deb: Path, work: Path, binds: dict | None = None,
                  rw_binds: dict | None = None) -> Iterator[nspawn.Container]:
    """A booted Debian `release` with the package installed by apt as an operator does
    (`apt install ./tracker-backup_*.deb`: dependencies and Recommends from Debian);
    `binds`/`rw_binds` (host path -> path inside) are added to the package's own."""
    tree = nspawn.ensure_tree(release=release)
    sources = work / "apt-sources"
    sources.mkdir()
    for name, text in nspawn.apt_sources(release):
        (sources / name).write_text(text)
    all_binds = {release_deb.parent: "/mnt/dist", ROOT / "tests": "/mnt/tests",
                 sources: "/mnt/aptsources", **(binds or {})}
    box = nspawn.Container(tree, work, all_binds, rw_binds, release=release).start()
    try:
        # The host's Debian mirror (the only network here), with the suites of `release`.
        box.sh("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*; "
               "for f in /mnt/aptsources/*; do case $f in "
               "*/sources.list) cp $f /etc/apt/sources.list ;; "
               "*) cp $f /etc/apt/sources.list.d/ ;; esac; done; "
               "apt-get update -qq", timeout=300)
        box.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q /mnt/dist/{release_deb.name}",
               timeout=600)
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="module")
def container(release, release_deb: Path, tmp_path_factory):
    """A booted Debian `release` with the package installed by apt (installed_box)."""
    with installed_box(release, release_deb, tmp_path_factory.mktemp(f"nspawn-{release}")) as box:
        yield box
