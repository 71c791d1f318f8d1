"""Waiting for something to become true, for tests and benchmarks: the one polling loop."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition", *,
             interval: float = 0.2, proc: subprocess.Popen | None = None,
             diagnose: Callable[[], object] | None = None) -> T:
    """Poll predicate() every `interval` seconds until it returns something truthy; return that.

    Raises AssertionError naming `what` after `timeout` seconds, with the last value the
    predicate returned and, when given, what diagnose() says then (read at the timeout,
    not before the wait). With `proc`, the wait ends early if that process exits first,
    with its output and the diagnosis.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            streams = "".join(f"\n{text}" for text in proc.communicate() if text)
            raise AssertionError(f"process exited {proc.returncode} before {what}"
                                 f"{streams}{_diagnosis(diagnose)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} "
                                 f"(last value {value!r}){_diagnosis(diagnose)}")
        time.sleep(interval)


def _diagnosis(diagnose: Callable[[], object] | None) -> str:
    return f"\n{diagnose()}" if diagnose is not None else ""
