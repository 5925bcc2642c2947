"""What every benchmark shares: ``bench``, pytest-benchmark's fixture that skips
cleanly when benchmarks are off (``make test``); ``make bench`` turns them on."""

from __future__ import annotations

import pytest


@pytest.fixture
def bench(benchmark):
    """The benchmark fixture, or a skip when benchmarks are disabled."""
    if benchmark.disabled:
        pytest.skip("benchmarks are disabled: run `make bench` (pytest --benchmark-enable)")
    return benchmark
