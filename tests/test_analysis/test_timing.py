"""Interleaved rounds and per-round ratios."""
import pytest

from mdeq_mm.analysis import RatioSummary, interleaved_times


def test_contenders_alternate_within_every_round():
    calls = []
    interleaved_times({'a': lambda: calls.append('a') or 1.0,
                       'b': lambda: calls.append('b') or 2.0}, rounds=3)
    assert calls == ['a', 'b'] * 3


def test_a_load_burst_in_one_round_moves_the_median_ratio_little():
    a = [2.0, 20.0, 2.2]  # round 2 was slowed down for both contenders
    b = [1.0, 10.0, 1.0]
    summary = RatioSummary.of(a, b)
    assert summary.median == pytest.approx(2.0)
    assert (summary.low, summary.high) == pytest.approx((2.0, 2.2))


def test_ratio_summary_needs_paired_rounds():
    with pytest.raises(ValueError, match='3 and 2'):
        RatioSummary.of([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match='rounds'):
        interleaved_times({'a': lambda: 1.0}, rounds=0)
