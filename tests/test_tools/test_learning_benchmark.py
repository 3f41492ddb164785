"""The frame goals of tools/analysis_tools/learning_benchmark.py, judged on made-up curves."""
import importlib.util
import os.path as osp

from mdeq_mm.analysis.learning_curves import LearningCurve

TOOL = osp.join(osp.dirname(__file__), '..', '..', 'tools', 'analysis_tools',
                'learning_benchmark.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('learning_benchmark', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def curve(name, metric, seconds, final_res=5e-4):
    return LearningCurve(name=name, metric_name='mIoU', train_iters=[10, 20, 30, 40],
                         loss=[1.0, 0.8, 0.6, 0.5], val_iters=[10, 20, 30, 40], metric=metric,
                         train_seconds=seconds,
                         val_solver={'deq_fwd_rel_res': [0.1, 0.01, 0.002, final_res],
                                     'deq_fwd_steps': [12, 12, 12, 9]})


EQUAL_TIME = 'ours >= fast at every equal training time (at its validations after the start)'


def goals(ours_metric, fast_metric, ours_seconds=(10, 20, 30, 40), final_res=(5e-4, )):
    curves = {
        'ours': [curve('ours', ours_metric, list(ours_seconds), res) for res in final_res],
        'authors': [curve('authors', [5, 10, 15, 20], [15, 30, 45, 60])],
        'fast': [curve('fast', fast_metric, [2, 4, 6, 8])],
    }
    rows = load_tool().cityscapes_goals(curves, 'ours', 'authors', ['fast'], 'fast', 1e-3)
    return {row.split(' | ')[0].lstrip('| '): row.rstrip(' |').split(' | ')[-1] for row in rows}


PER_SECOND = ('ours >= fast per second of training from the middle of its run on (@20, {} s; '
              'at its validations)')


def test_per_second_goal_judges_the_second_half_of_our_run_against_the_baseline_then():
    # The fast baseline ends (at 8 s) with 50; from our run's middle (@20, 20 s) on we have 50+.
    judged = goals([30, 50, 55, 60], [20, 40, 48, 50])
    row = PER_SECOND.format(20)
    assert judged[row] == 'met'
    # early on (10 s) we trail: the every-equal-time goal fails, the from-the-middle one not
    assert judged[EQUAL_TIME] == 'NOT met'
    judged = goals([30, 49, 55, 60], [20, 40, 48, 50])
    assert judged[row] == 'NOT met'


def test_per_second_goal_judges_the_middle_validation_even_when_it_came_before_half_the_time():
    # @20 of 40 iterations is logged at 19 s of 40: still the middle of the run, still judged
    judged = goals([30, 49, 55, 60], [20, 40, 48, 50], ours_seconds=[10, 19, 30, 40])
    assert judged[PER_SECOND.format(19)] == 'NOT met'


def test_a_validation_of_the_initial_weights_gives_each_curve_its_start_and_no_goal_of_its_own():
    def started(name, metric, seconds):
        return LearningCurve(name=name, metric_name='mIoU', train_iters=[10, 20],
                             loss=[1.0, 0.8], val_iters=[0, 10, 20], metric=metric,
                             train_seconds=seconds)

    def judged(ours_metric):
        curves = {
            'ours': [started('ours', ours_metric, [0, 12, 24])],
            'authors': [started('authors', [3, 5, 10], [0, 15, 30])],
            'fast': [started('fast', [5, 20, 40], [0, 10, 20])],
        }
        rows = load_tool().cityscapes_goals(curves, 'ours', 'authors', ['fast'], 'fast', 1e-3)
        return {row.split(' | ')[0].lstrip('| '): row.rstrip(' |').split(' | ')[-1]
                for row in rows}

    # at the fast baseline's first validation (10 s) ours has none yet, but its curve runs
    # from its initial weights (0 s) to @10 (12 s): 2 + (30 - 2) * 10 / 12 = 25.3 >= 20.
    # At 0 s (2 < 5) both are untrained: no goal there, and "from @" counts trained ones
    met = judged([2, 30, 45])
    assert met[EQUAL_TIME] == 'met'
    assert met['ours >= fast at every validation from @20'] == 'met'
    assert judged([2, 15, 45])[EQUAL_TIME] == 'NOT met'


def test_solvability_goal_needs_the_last_validation_solve_at_the_tolerance_in_every_seed():
    row = 'ours: the last validation solve reaches the tolerance (0.001), every seed'
    assert goals([30, 50, 55, 60], [20, 40, 48, 50], final_res=(5e-4, 9e-4))[row] == 'met'
    assert goals([30, 50, 55, 60], [20, 40, 48, 50], final_res=(5e-4, 2e-3))[row] == 'NOT met'
