"""The test writers (tracker_writer.py, mysql_writer.py) as child processes: started,
watched, stopped.

One class for the tests' fixtures, the archive kit and the benchmarks, so the
start-up check (the writer committed a few transactions), the stats file and
the stop sequence are written once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

WRITER = Path(__file__).resolve().parent / "tracker_writer.py"


class WriterChild:
    """A writer script `cmd` that reports in the JSON file `stats`; returns once it has
    committed a few transactions (RuntimeError naming `what` if it does not)."""

    def __init__(self, cmd: Sequence[str], stats: Path, what: str, *, start_timeout: float = 15.0,
                 stop_timeout: float = 20.0):
        self.stats_path = stats
        self.stop_timeout = stop_timeout
        self.proc = subprocess.Popen(cmd)
        self.started = time.monotonic()
        deadline = self.started + start_timeout
        while self.stats().get("ops", 0) < 5:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError(f"{what} did not start: {self.stats()}")
            time.sleep(0.02)

    def stats(self) -> dict:
        try:
            return json.loads(self.stats_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def stop(self) -> dict:
        """SIGTERM (the writer finishes its transaction and writes its stats); the stats."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=self.stop_timeout)
        return self.stats()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class WriterProcess(WriterChild):
    """tests/support/tracker_writer.py on `db` at `rate` tx/s; `stats()` reads its stats file."""

    def __init__(self, db: Path, stats: Path, rate: float, existing: int, *,
                 user: str | None = None, extra: Sequence[str] = (), python: str = sys.executable,
                 start_timeout: float = 15.0, stop_timeout: float = 20.0):
        stats.unlink(missing_ok=True)
        cmd = [python, str(WRITER), str(db), "--rate", str(rate), "--stats", str(stats),
               "--existing", str(existing), *extra]
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        super().__init__(cmd, stats, f"writer on {db}", start_timeout=start_timeout,
                         stop_timeout=stop_timeout)
