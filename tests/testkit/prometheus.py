"""Reading Prometheus' text format in tests."""

from __future__ import annotations


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent); labels in any order."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # as Prometheus sorts
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0


def fetch(url: str) -> str:
    """A ``/metrics`` page, checked to be Prometheus' text format."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        return answer.read().decode()
