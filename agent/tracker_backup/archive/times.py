"""Times of the continuous archive: `--at` values and how times are printed."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_at(text: str) -> float | None:
    """`latest` → None; ISO-8601 UTC (`2026-12-01T07:00:05Z`, fractions allowed) → POSIX s."""
    if text == "latest":
        return None
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--at {text!r}: expected 'latest' or an ISO-8601 UTC time such as "
                         "2026-12-01T07:00:05Z") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def format_time(t: float | None) -> str:
    if t is None:
        return "latest"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
