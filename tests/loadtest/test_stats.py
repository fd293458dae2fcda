import math

import pytest
from hypothesis import given, strategies as st

from loadtest.stats import Sample, percentile, summarise, table


def test_nearest_rank():
    v = list(range(1, 101))
    assert percentile(v, 50) == 50 and percentile(v, 99) == 99 and percentile(v, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(v, 101)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1), st.floats(min_value=0, max_value=100))
def test_percentile_is_a_measured_value_and_monotone(values, p):
    s = sorted(values)
    assert percentile(s, p) in s
    assert percentile(s, p) <= percentile(s, 100)


def test_summary_and_table():
    samples = [Sample("kernel start", 0.0, 0.010, True), Sample("kernel start", 0.5, 0.030, True),
               Sample("kernel start", 1.0, 0.0, False, "HTTP 503"),
               Sample("first computation", 0.1, 0.002, True)]
    kernel, first = summarise(samples, duration=2.0)
    assert (kernel.count, kernel.errors, kernel.p50, kernel.p99) == (3, 1, 0.010, 0.030)
    assert kernel.throughput == 1.0 and kernel.error_kinds == {"HTTP 503": 1}
    assert first.phase == "first computation"
    text = table([kernel, first])
    assert "kernel start" in text and "HTTP 503: 1" in text and "10.0" in text
