"""A steady rate for the test writers (tracker_writer.py, mysql_writer.py).

The writers run as scripts (on the host, in the nspawn guest, in a compose service):
this directory is then sys.path[0], so they import this module as `pacing`.
"""

from __future__ import annotations

import time


class Pacer:
    """Spaces a loop's rounds at `rate` per second (0: flat out)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        """Sleep until the next round is due; after a stall, carry on from now, not in a burst."""
        if not self.interval:
            return
        self.next_at += self.interval
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            self.next_at = time.monotonic()  # fell behind (stalled): do not burst
