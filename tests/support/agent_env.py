"""The environment the tests and benchmarks run the agent's CLI in."""

from __future__ import annotations

import os
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"
# Set when the test run itself is under systemd: the agent must not take them for its own unit.
SYSTEMD_VARS = ("INVOCATION_ID", "NOTIFY_SOCKET", "JOURNAL_STREAM")


def agent_env(**extra: str) -> dict[str, str]:
    """This process's environment without systemd's unit variables, the agent's package on
    PYTHONPATH, then `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    env["PYTHONPATH"] = str(AGENT)
    env.update(extra)
    return env
