"""Fixtures of the metrics tests: promtool, a config with [metrics] textfile."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import Cli, write_config


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of Debian's promtool (package prometheus, in scripts/test-packages.txt)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run ./scripts/setup-test-env (Debian package prometheus)")
    return path


@pytest.fixture
def textfile(tmp_path: Path) -> Path:
    """Where node_exporter's textfile collector would look (a directory of its own)."""
    directory = tmp_path / "node-exporter"
    directory.mkdir()
    return directory / "tracker-backup.prom"


@pytest.fixture
def metrics_config(tmp_path: Path, storage: Path, textfile: Path) -> Path:
    return write_config(tmp_path / "tb-metrics.conf", f"""
[backup]
path = {tmp_path / "backups"}
[metrics]
textfile = {textfile}
[sqlite]
database = {storage / "tracker/lib/database/tracker.db"}
[files]
root = {storage}
include = **
exclude = tracker/log/**
""")


@pytest.fixture
def mcli(metrics_config: Path) -> Cli:
    return Cli(metrics_config)
