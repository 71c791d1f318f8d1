"""Fixtures of the fault suite: a host with one good snapshot already taken."""

from __future__ import annotations

import shutil

import pytest

from faults.harness import Host, db_state, fingerprints, make_host


@pytest.fixture(autouse=True)
def _strace_available():
    assert shutil.which("strace"), "strace is required (scripts/test-packages.txt)"


@pytest.fixture
def host(tmp_path) -> Host:
    """A tracker host whose backup path already holds one good snapshot."""
    h = make_host(tmp_path)
    h.cli("run", check=True)
    return h


@pytest.fixture
def baseline(host):
    """(snapshot fingerprints, live-database state) before the fault."""
    return fingerprints(host), db_state(host.db)


@pytest.fixture
def tmpfs():
    """Factory: tmpfs(path, size) mounts a small tmpfs there; unmounted after the test."""
    from faults.harness import mount_tmpfs, unmount

    mounted = []

    def mount(path, size: str = "64m"):
        mount_tmpfs(path, size)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        unmount(path)
