"""Goals are judged with the bound they state, and from the right figures."""
import pytest

from mdeq_mm.analysis import Goal, GoalThresholds, judge


@pytest.mark.parametrize('value,op,met', [
    (1.99, '<=', True), (2.0, '<=', True), (2.01, '<=', False),
    (2.01, '>=', True), (2.0, '>=', True), (1.99, '>=', False),
])
def test_goal_is_met_exactly_when_the_value_satisfies_its_bound(value, op, met):
    assert Goal('ratio', value, op, 2.0).met is met


def test_goal_without_a_value_is_neither_met_nor_missed():
    assert Goal('ratio', None, '<=', 2.0).met is None


def test_goal_rejects_an_unknown_comparison():
    with pytest.raises(ValueError, match="'<'"):
        Goal('ratio', 1.0, '<', 2.0)


def ratio(median, low=None, high=None):
    return dict(median=median, low=low or median, high=high or median, ratios=[median])


def run(peak):
    return dict(train_peak_bytes=peak)


def test_flat_memory_compares_the_largest_with_the_smallest_budget():
    memory = {'implicit-10': run(100), 'implicit-26': run(120), 'implicit-40': run(104),
              'unrolled-26': run(1000)}
    goals = judge(dict(memory=memory, memory_f_evals=26), GoalThresholds())
    flat = next(g for g in goals if 'at 40 / at 10' in g.name)
    assert flat.value == pytest.approx(1.04) and flat.met
    unrolled = next(g for g in goals if 'unrolled' in g.name)
    assert unrolled.value == pytest.approx(0.12) and unrolled.met


def test_step_time_goal_uses_the_median_ratio_and_threshold_option():
    results = dict(step_ratios={'1': {'implicit_over_hrnet': ratio(2.5, 2.1, 9.0)},
                                '2': {'implicit_over_hrnet': ratio(1.5)}})
    goals = judge(results, GoalThresholds(step_time_vs_hrnet=2.0))
    steps = [g for g in goals if 'training step' in g.name]
    assert [g.met for g in steps] == [False, True]
    assert steps[0].spread == '2.10-9.00'
    assert judge(results, GoalThresholds(step_time_vs_hrnet=3.0))[0].met


def test_missing_measurements_give_goals_without_values():
    goals = judge(dict(memory_f_evals=26), GoalThresholds())
    assert goals and all(g.value is None and g.met is None for g in goals)
