"""Lowering the agent's own priority, and the byte-rate limiter.

ionice does nothing on the `none`/`mq-deadline` I/O schedulers common on cloud
VMs, so every source also honours `rate_limit` by sleeping between reads.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

NICE_LEVEL = 10
IONICE_LEVEL = 7


def under_systemd() -> bool:
    """True when started by systemd (the unit sets our priorities itself)."""
    return "INVOCATION_ID" in os.environ


def lower_priority() -> None:
    """nice 10 and best-effort I/O priority 7, unless systemd already set them.

    Best-effort 7 rather than idle: on a tracker that is never quiet, the idle
    class can starve the backup forever.
    """
    if under_systemd():
        return
    import psutil  # python3-psutil: a hard dependency of the package

    proc = psutil.Process()
    try:
        if proc.nice() < NICE_LEVEL:
            proc.nice(NICE_LEVEL)
        proc.ionice(psutil.IOPRIO_CLASS_BE, IONICE_LEVEL)
    except (psutil.Error, OSError) as exc:
        log.warning("could not lower priority: %s", exc)


class RateLimiter:
    """Token bucket over bytes: `consume(n)` sleeps so the mean rate stays at the limit.

    A limit of 0 means unlimited. The bucket holds at most one second of credit
    so a pause does not turn into a burst.
    """

    def __init__(self, bytes_per_second: float, clock=time.monotonic, sleep=time.sleep):
        self.rate = float(bytes_per_second)
        self._clock = clock
        self._sleep = sleep
        self._allowance = self.rate
        self._last = clock()
        self.slept = 0.0

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def consume(self, nbytes: int) -> None:
        """Account for `nbytes` just read; sleep if we are ahead of the rate."""
        if self.unlimited or nbytes <= 0:
            return
        now = self._clock()
        self._allowance = min(self.rate, self._allowance + (now - self._last) * self.rate)
        self._last = now
        self._allowance -= nbytes
        if self._allowance < 0:
            delay = -self._allowance / self.rate
            self._sleep(delay)
            self.slept += delay
            self._last = self._clock()
            self._allowance = 0.0
