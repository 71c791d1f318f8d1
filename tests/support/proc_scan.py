"""Watching every process on the host for a secret in its argv or environment."""

from __future__ import annotations

import os
import threading
import time


class ProcScanner(threading.Thread):
    """Reads every /proc/*/cmdline and /proc/*/environ on the host, over and over.

    Container processes are host processes in another pid namespace: the
    host's /proc shows them (the mysql client run by `docker compose exec`
    inside the container included), so one scan covers both sides.
    """

    def __init__(self, *secrets: str):
        super().__init__(daemon=True)
        self.secrets = [s.encode() for s in secrets]
        self.leaks: list[str] = []
        self.seen: set[str] = set()  # argv[0] basenames of every process seen
        self.scans = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == os.getpid():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        cmdline = fh.read()
                    with open(f"/proc/{pid}/environ", "rb") as fh:
                        environ = fh.read()
                except OSError:
                    continue
                self.seen.add(os.path.basename(cmdline.split(b"\0")[0]).decode(errors="replace"))
                for what, data in (("cmdline", cmdline), ("environ", environ)):
                    if any(secret in data for secret in self.secrets):
                        self.leaks.append(f"pid {pid} {what}: {cmdline[:200]!r}")
            self.scans += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
