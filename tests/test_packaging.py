"""The package's dependency list has one source of truth shared with ./scripts/demo."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def control_relation(field: str) -> set[str]:
    """Package names of one field of the binary package in packaging/debian/control
    (substitution variables such as ${misc:Depends} left out)."""
    text = (ROOT / "packaging/debian/control").read_text()
    binary = text[text.index("\nPackage: tracker-backup"):]
    m = re.search(rf"^{field}:(.*(?:\n[ \t].*)*)", binary, re.M)
    assert m, f"no {field} in packaging/debian/control"
    return {alt.split()[0] for dep in m.group(1).split(",") for alt in dep.split("|")
            if alt.strip() and not alt.strip().startswith("${")}


def setup_env_list(*args: str) -> list[str]:
    return subprocess.run([str(ROOT / "scripts/setup-test-env"), *args, "--list"],
                          capture_output=True, text=True, check=True).stdout.split()


def test_demo_installs_exactly_the_debs_depends():
    runtime, depends = set(setup_env_list("--runtime")), control_relation("Depends")
    assert runtime == depends, (
        f"scripts/runtime-packages.txt {sorted(runtime)} != Depends of packaging/debian/control "
        f"{sorted(depends)}: a run-time dependency goes in both (and docs/install.md)")
    demo = (ROOT / "scripts/demo").read_text()
    assert re.search(r"^\./scripts/setup-test-env --runtime\b", demo, re.M), \
        "scripts/demo must install the run-time list only"


def test_test_list_includes_the_runtime_list_and_the_toolchain():
    everything = set(setup_env_list())
    assert set(setup_env_list("--runtime")) < everything
    assert {"mariadb-server", "lintian", "debootstrap", "systemd-container"} <= everything
    assert not {"mariadb-server", "lintian", "debootstrap"} & set(setup_env_list("--runtime"))


def test_mysql_client_is_suggested_not_recommended():
    assert "mariadb-client" in control_relation("Suggests")
    assert not {"mariadb-client", "default-mysql-client"} & (control_relation("Recommends")
                                                             | control_relation("Depends"))


def test_setup_test_env_rejects_an_unknown_option():
    proc = subprocess.run([str(ROOT / "scripts/setup-test-env"), "--bogus"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_docs_say_disable_also_stops_the_drill_timer():
    man = (ROOT / "packaging/tracker-backup.8").read_text().replace("\\-", "-")
    disable = man[man.index(".B disable\n"):]
    disable = disable[:disable.index(".TP", 3)]
    assert "both timers" in disable and "drill" in disable, disable
    assert "tracker-backup-drill.timer" in man
    for doc in ("docs/install.md", "docs/configuration.md"):
        text = (ROOT / doc).read_text()
        assert "tracker-backup-drill.timer" in text and "disable" in text, doc
    assert "restore drill timer" in (ROOT / "README.md").read_text()


def test_every_source_directory_is_a_package_setuptools_ships():
    # setup.cfg's `packages = find:` skips a directory without __init__.py: the .deb
    # would then lack its modules (engines/mysql/binlog once did) while the tests,
    # run from the source tree, still import them as a namespace package.
    from setuptools import find_packages

    shipped = {p.replace(".", "/") for p in find_packages(str(ROOT / "agent"))}
    sources = {str(d.relative_to(ROOT / "agent")) for d in (ROOT / "agent").rglob("*")
               if d.is_dir() and any(d.glob("*.py"))}
    assert sources <= shipped, f"no __init__.py in {sorted(sources - shipped)}"
