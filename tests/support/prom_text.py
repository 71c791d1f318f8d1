"""A small reader of the Prometheus text format, for tests (independent of the agent's writer)."""

from __future__ import annotations

import re

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


class Exposition:
    """Parsed text: samples by (name, labels), and each family's TYPE and HELP."""

    def __init__(self, text: str):
        self.samples: dict[tuple[str, frozenset], float] = {}
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                name, kind = line[7:].split(" ", 1)
                self.types[name] = kind
            elif line.startswith("# HELP "):
                name, text_ = line[7:].split(" ", 1)
                self.helps[name] = text_
            elif line and not line.startswith("#"):
                m = _SAMPLE.match(line)
                if not m:
                    raise ValueError(f"not a sample line: {line!r}")
                labels = frozenset((k, v.encode().decode("unicode_escape"))
                                   for k, v in _LABEL.findall(m.group(2) or ""))
                self.samples[(m.group(1), labels)] = float(m.group(3))

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; KeyError naming it if absent."""
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            raise KeyError(f"no sample {name}{labels or ''}; have: {sorted(n for n, _ in self.samples)}")
        return self.samples[key]

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """{label value: sample value} of one family."""
        return {dict(lbls)[label]: v for (n, lbls), v in self.samples.items()
                if n == name and label in dict(lbls)}

    def names(self) -> set[str]:
        return {n for n, _ in self.samples}
