"""Sizes and ages for people: one formatting for logs, progress and `list`/`status`."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """1234567 → '1.2 MB' (decimal units, like df -H)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_age(seconds: float) -> str:
    """90 → '90s', 5400 → '90m', 86400 → '24.0h', 3 days → '3.0d'."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
