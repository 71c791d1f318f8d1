"""The Prometheus text exposition format (version 0.0.4): families of samples → text.

Only what the agent needs: gauges and counters, label values escaped, no
timestamps (node_exporter's textfile collector rejects them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = ("gauge", "counter")


@dataclass(frozen=True)
class Sample:
    """One value of a family, with its labels (name → value)."""

    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class Family:
    """A metric family: name, type, help text and its samples."""

    name: str
    type: str
    help: str
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        if self.type not in TYPES:
            raise ValueError(f"{self.name}: unknown type {self.type!r}")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's name ends in _total")

    def add(self, value: float | int | bool, **labels: str) -> None:
        """Append a sample; label names must be valid, values any text."""
        for name in labels:
            if not _LABEL_RE.match(name) or name.startswith("__"):
                raise ValueError(f"{self.name}: invalid label name {name!r}")
        self.samples.append(Sample(float(value), tuple(sorted(labels.items()))))


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without '.0', NaN, +Inf, -Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render(families: list[Family]) -> str:
    """The text of all families that have samples, in the given order."""
    lines: list[str] = []
    seen: set[str] = set()
    for fam in families:
        if fam.name in seen:
            raise ValueError(f"metric family {fam.name} given twice")
        seen.add(fam.name)
        if not fam.samples:
            continue
        lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for sample in fam.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels)
            lines.append(f"{fam.name}{{{labels}}} {format_value(sample.value)}" if labels
                         else f"{fam.name} {format_value(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""
