"""Reading Prometheus text back in tests: every sample by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, *, absent: float | None = None, **labels: str) -> float:
    """The sample's value; `absent` if there is none (KeyError when `absent` is None)."""
    key = (name, tuple(sorted(labels.items())))
    if absent is not None and key not in samples:
        return absent
    return samples[key]
