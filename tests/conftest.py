"""Shared fixtures: a tracker storage with a live SQLite database, a writer, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agent"
sys.path.insert(0, str(ROOT / "tests"))

from support.agent_env import agent_env  # noqa: E402, F401 - tests import it from here
from support.tracker_db import create_tracker_db  # noqa: E402
from support.writer_process import WriterProcess  # noqa: E402


class Cli:
    """Runs the real `python3 -m tracker_backup` in a child process (environment: `env`, by
    default agent_env() at each call; `timeout`: the default of each call)."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None, timeout: float = 300):
        self.config = config
        self.env = env
        self.timeout = timeout

    def __call__(self, *args: str, check: bool | None = None, timeout: float | None = None,
                 config: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "tracker_backup", "--config", str(config or self.config), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or self.timeout,
                              env=self.env or agent_env())
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:{proc.stdout}\n"
                                 f"stderr:{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "tracker_backup", "--config", str(self.config), *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env or agent_env())


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    """A Torrust-like storage directory with a small WAL tracker database."""
    root = tmp_path / "storage"
    for d in ("tracker/etc", "tracker/lib/database", "tracker/log", "caddy/etc"):
        (root / d).mkdir(parents=True)
    (root / "tracker/etc/tracker.toml").write_text("[core]\nlisted = false\n")
    (root / "tracker/log/tracker.log").write_text("noise\n")
    (root / "caddy/etc/Caddyfile").write_text("tracker.example.org {}\n")
    create_tracker_db(root / "tracker/lib/database/tracker.db", rows=2000)
    return root


@pytest.fixture
def config_file(tmp_path: Path, storage: Path) -> Path:
    return write_config(tmp_path / "tb.conf", f"""
[backup]
path = {tmp_path / "backups"}
[retention]
keep_days = 7
keep_last = 3
[sqlite]
database = {storage / "tracker/lib/database/tracker.db"}
[files]
root = {storage}
include = **
exclude = tracker/log/**
""")


@pytest.fixture
def cli(config_file: Path) -> Cli:
    return Cli(config_file)


class Writer(WriterProcess):
    """A tracker-style writer process (tests/support/tracker_writer.py)."""

    def __init__(self, db: Path, stats: Path, rate: float, existing: int, user: str | None = None):
        super().__init__(db, stats, rate, existing, user=user, start_timeout=10, stop_timeout=10)


@pytest.fixture
def start_writer(tmp_path: Path):
    """Factory: start_writer(db, rate=..., existing=...) → Writer, stopped after the test."""
    writers: list[Writer] = []

    def start(db: Path, rate: float = 300, existing: int = 2000, user: str | None = None,
              stats_dir: Path | None = None) -> Writer:
        w = Writer(db, (stats_dir or tmp_path) / f"writer{len(writers)}.json", rate, existing, user)
        writers.append(w)
        return w

    yield start
    for w in writers:
        w.stop()


@pytest.fixture
def world_tmp():
    """A directory every user can reach and write (tests that act as a non-root uid)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="tb-test-", dir="/var/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fresh_cli():
    """Cli factory for a given config path."""
    return Cli
