"""The Debian package itself, on every release: built, lintian-clean, contents, dependencies.

Per release (`[bookworm]`, `[trixie]`): the .deb that release installs (built by its own
toolchain, see conftest.py), that release's lintian, and a fresh tree of that release
for `./scripts/demo`.
"""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from e2e import nspawn
from e2e.conftest import SRC, WORK
from tracker_backup import __version__

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DOC = "/usr/share/doc/tracker-backup"
# What a MySQL client would drag onto a SQLite-only host (issue 15, item 9).
MYSQL_CLIENT_PACKAGES = ("mariadb-client", "mariadb-client-core", "default-mysql-client",
                         "perl", "libdbi-perl")


def runtime_packages() -> set[str]:
    out = subprocess.run([str(ROOT / "scripts/setup-test-env"), "--runtime", "--list"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def deb_paths(deb: Path) -> set[str]:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    return {line.split()[-1].lstrip(".").rstrip("/") for line in listing.splitlines()}


def deb_file(deb: Path, path: str) -> bytes:
    """One file's content from the package's data archive."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.extractfile("." + path).read()


def fields(deb: Path) -> dict[str, str]:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends", "Recommends", "Suggests", "Version"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def names(relation: str) -> set[str]:
    """'a (>= 1), b | c' -> {'a', 'b', 'c'} (architecture qualifiers dropped)."""
    return {alt.split()[0].split(":")[0] for dep in relation.split(",") for alt in dep.split("|")
            if alt.strip()}


def test_make_deb_builds_the_versioned_package_from_a_clean_clone(tmp_path):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-local", str(ROOT), str(tmp_path / "clone")], check=True)
    subprocess.run(["git", "-C", str(tmp_path / "clone"), "checkout", "-q", head], check=True)
    proc = subprocess.run(["make", "-s", "deb"], cwd=tmp_path / "clone", capture_output=True, text=True,
                          env=nspawn.CLEAN_ENV, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "clone" / "dist" / f"tracker-backup_{__version__}_all.deb").is_file()


def test_package_ships_every_unit_under_usr_lib_and_the_generator_conffile_and_man_page(release_deb):
    paths = deb_paths(release_deb)
    for unit in (ROOT / "units").iterdir():
        if unit.name == "tracker-backup-generator":
            assert "/usr/lib/systemd/system-generators/tracker-backup-generator" in paths
        else:
            assert f"/usr/lib/systemd/system/{unit.name}" in paths, unit.name
    # Nothing under /lib: on Debian 13 it is an alias of /usr/lib (lintian: aliased-location).
    assert [p for p in paths if p == "/lib" or p.startswith("/lib/")] == []
    assert {"/etc/tracker-backup/tracker-backup.conf", "/usr/bin/tracker-backup",
            "/usr/share/man/man8/tracker-backup.8.gz"} <= paths
    assert fields(release_deb)["Version"] == __version__


def test_package_installs_the_whole_docs_directory_uncompressed(release_deb):
    paths = deb_paths(release_deb)
    docs = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert {"restore.md", "mysql.md", "reliability.md", "configuration.md", "format.md",
            "install.md", "sqlite.md"} <= set(docs)
    missing = [name for name in docs if f"{DOC}/{name}" not in paths]
    assert missing == [], f"docs/ files not in the package: {missing}"
    assert f"{DOC}/README.md" in paths
    # Plain text (readable with less on a broken host), byte for byte the repository's.
    assert deb_file(release_deb, f"{DOC}/restore.md") == (ROOT / "docs/restore.md").read_bytes()


def test_man_page_points_to_the_installed_runbook_and_docs(release_deb):
    man = gzip.decompress(deb_file(release_deb, "/usr/share/man/man8/tracker-backup.8.gz")).decode()
    text = man.replace("\\-", "-").replace("\\&", "")
    named = set(re.findall(re.escape(DOC) + r"/([\w.-]+\.md)", text))
    assert {"restore.md", "mysql.md", "reliability.md", "configuration.md", "install.md"} <= named, named
    dangling = [n for n in named if f"{DOC}/{n}" not in deb_paths(release_deb)]
    assert dangling == [], f"the man page names docs the package does not ship: {dangling}"


def test_depends_are_the_runtime_list_and_the_mysql_client_is_only_suggested(release_deb):
    f = fields(release_deb)
    print(f"{release_deb.name}: {f}")
    assert names(f["Depends"]) == runtime_packages()
    assert names(f["Recommends"]) == {"zstd"}
    assert names(f["Suggests"]) == {"mariadb-client", "default-mysql-client"}
    assert not names(f["Depends"] + "," + f["Recommends"]) & set(MYSQL_CLIENT_PACKAGES)


def lintian_tags(run, deb: str) -> tuple[list[tuple[str, str]], str, str]:
    proc = run(["lintian", "--info", "--pedantic", "--display-experimental", deb])
    version = run(["lintian", "--version"]).stdout.strip()
    return re.findall(r"^([EWIPX]): tracker-backup: (\S+)", proc.stdout, re.M), proc.stdout, version


def _host_run(argv):
    return subprocess.run(argv, capture_output=True, text=True, env=nspawn.CLEAN_ENV, timeout=600,
                          check=False)


def test_lintian_of_the_release_reports_no_errors_and_no_unexplained_tags(release, release_deb, request):
    """The release's own lintian, on the .deb that release installs and on the host's build."""
    if release == nspawn.host_release():
        checks = [(_host_run, str(release_deb))]
    else:
        box = request.getfixturevalue("build_box")
        host_deb = request.getfixturevalue("deb")

        def run(argv):
            return box.run(argv, check=False, timeout=600)

        (box.workdir / "host").mkdir(exist_ok=True)
        (box.workdir / "host" / host_deb.name).write_bytes(host_deb.read_bytes())
        checks = [(run, str(release_deb).replace(str(box.workdir), WORK)),
                  (run, f"{WORK}/host/{host_deb.name}")]
    explained = (ROOT / "docs" / "install.md").read_text()
    for run, deb in checks:
        tags, out, version = lintian_tags(run, deb)
        print(f"{release}: {version} --pedantic --display-experimental {deb}: {tags or 'clean'}")
        assert not [t for t in tags if t[0] == "E"], out
        unexplained = [name for _, name in tags if name not in explained]
        assert unexplained == [], f"explain or fix in docs/install.md: {unexplained}\n{out}"


def test_build_has_no_setuptools_warnings_on_the_release(release, release_deb):
    """pyproject.toml/setup.cfg suit both setuptools 66 (Debian 12) and 78 (Debian 13)."""
    log = (release_deb.parent.parent / "build" / "build.log").read_text()
    assert "dpkg-deb: building package 'tracker-backup'" in log
    found = re.findall(r".*(?:SetuptoolsDeprecationWarning|SetuptoolsWarning|_BetaConfiguration"
                       r"|project\.license).*", log)
    assert found == [], found


def test_package_built_on_each_release_has_the_same_files(release, release_deb, deb):
    # dh-python's bookkeeping in the .dist-info differs by version (RECORD vs INSTALLER).
    def files(d: Path) -> set[str]:
        return {p for p in deb_paths(d) if not re.search(r"\.dist-info/(INSTALLER|RECORD|REQUESTED)$", p)}

    assert files(release_deb) == files(deb)


@pytest.fixture
def fresh(release, release_deb, tmp_path_factory):
    """A booted tree of `release` with nothing of the project installed (a new overlay per test):
    the sources at /mnt/src, the release's .deb in /mnt/dist, apt sources of the host's mirror."""
    tree = nspawn.ensure_tree(release=release)
    work = tmp_path_factory.mktemp(f"fresh-{release}")
    sources = work / "apt-sources"
    sources.mkdir()
    for name, text in nspawn.apt_sources(release):
        (sources / name).write_text(text)
    box = nspawn.Container(tree, work, binds={ROOT: SRC, sources: "/mnt/aptsources",
                                                 release_deb.parent: "/mnt/dist"}, release=release)
    box.start()
    try:
        box.sh("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*; "
               "for f in /mnt/aptsources/*; do case $f in "
               "*/sources.list) cp $f /etc/apt/sources.list ;; *) cp $f /etc/apt/sources.list.d/ ;; "
               "esac; done; apt-get update -qq", timeout=300)
        yield box
    finally:
        box.stop()


def test_demo_installs_only_the_runtime_packages_and_backs_up(fresh):
    proc = fresh.run([f"{SRC}/scripts/demo", "/root/demo"], check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo: snapshots are in /root/demo/backups" in proc.stdout
    history = fresh.run(["cat", "/var/log/apt/history.log"]).stdout
    asked = set()
    for line in re.findall(r"^Commandline: apt-get install (.*)$", history, re.M):
        asked |= {w for w in line.split() if not w.startswith("-")}
    print(f"{fresh.release}: demo installed {sorted(asked)}; output tail: {proc.stdout[-300:]!r}")
    assert asked and asked <= runtime_packages(), asked
    status = fresh.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", "mariadb-server",
                        "lintian", "debootstrap", "systemd-container", "python3-pytest", "devscripts"],
                       check=False).stdout
    assert [line for line in status.splitlines() if line.split()[1:2] == ["ii"]] == []


def test_apt_install_on_a_sqlite_only_host_pulls_in_no_mysql_client_or_perl(fresh, release_deb):
    """`apt install ./tracker-backup.deb` as an operator runs it: Recommends on."""
    out = fresh.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y /mnt/dist/{release_deb.name}",
                   timeout=600).stdout
    history = fresh.run(["cat", "/var/log/apt/history.log"]).stdout
    installed = re.findall(r"^Install: (.*)$", history, re.M)
    assert len(installed) == 1, history
    new = sorted(re.findall(r"(?:^|, )([a-z0-9.+-]+):\w+ \(", installed[0]))
    print(f"{fresh.release}: apt install pulled in {len(new)} packages: {' '.join(new)}")
    assert {"tracker-backup", "zstd", *runtime_packages()} - {"python3"} <= set(new), out
    status = fresh.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n",
                        *MYSQL_CLIENT_PACKAGES], check=False).stdout
    present = [line.split()[0] for line in status.splitlines() if line.split()[1:2] == ["ii"]]
    assert present == [], f"installed on a SQLite-only host: {present}\n{out}"
    assert fresh.run(["tracker-backup", "--help"]).returncode == 0
