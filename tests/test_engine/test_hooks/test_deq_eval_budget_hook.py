"""DEQEvalBudgetHook: evaluation with its own solver budget, and the spectral radius."""
import math

import pytest
from mmengine.runner import Runner

from mdeq_mm.engine.hooks import DEQEvalBudgetHook


@pytest.fixture
def validate(runner_cfg, read_scalars, mdeq_backbone_cfg):
    """``validate(data_root, work_dir, hooks, **backbone)``: ``runner.val()`` with solver
    statistics; the runner and its scalars.json line."""

    def run(data_root, work_dir, hooks, **backbone):
        hooks = [*hooks, dict(type='DEQSolverStatsHook')]
        runner = Runner.from_cfg(
            runner_cfg(data_root, work_dir, hooks, backbone=mdeq_backbone_cfg(**backbone)))
        runner.val()
        (line, ) = read_scalars(work_dir)
        return runner, line

    return run


@pytest.mark.parametrize('configured', [None, 3])
def test_eval_budget_limits_solver_steps_and_is_restored(data_root, tmp_path, configured,
                                                         validate, recorder_of):
    runner, line = validate(data_root, str(tmp_path), [dict(type='DEQEvalBudgetHook', max_iter=2)],
                            eval_max_iter=configured)
    records = recorder_of(runner).val
    assert [r['eval_max_iter'] for r in records] == [2, 2]
    assert max(s for r in records for s in r['fwd_steps']) <= 2
    assert line['val/deq_fwd_steps'] <= 2
    assert runner.model.backbone.eval_max_iter == configured


def test_default_budget_uses_the_training_max_iter(data_root, tmp_path, validate, recorder_of,
                                                   solver_max_iter):
    runner, line = validate(data_root, str(tmp_path), [dict(type='DEQEvalBudgetHook')])
    records = recorder_of(runner).val
    assert [r['eval_max_iter'] for r in records] == [None, None]
    # tol=1e-6 is out of reach in 4 steps: every sample uses the whole budget
    assert line['val/deq_fwd_steps'] == solver_max_iter
    assert 'val/deq_spectral_radius' not in line


def test_spectral_radius_logged_at_validation(data_root, tmp_path, validate):
    hook = dict(type='DEQEvalBudgetHook', spectral_radius=True, power_iters=5, num_samples=1)
    runner, line = validate(data_root, str(tmp_path), [hook])
    radius = line['val/deq_spectral_radius']
    assert math.isfinite(radius) and radius > 0
    assert runner.message_hub.get_scalar('val/val/deq_spectral_radius').current() == radius


@pytest.mark.parametrize('kwargs,match', [
    (dict(max_iter=0), 'max_iter must be an int >= 1, got 0'),
    (dict(max_iter=2.5), 'max_iter must be an int >= 1, got 2.5'),
    (dict(spectral_radius='yes'), "spectral_radius must be a bool, got 'yes'"),
    (dict(power_iters=0), 'power_iters must be an int >= 1, got 0'),
    (dict(num_samples=0), 'num_samples must be an int >= 1, got 0'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DEQEvalBudgetHook(**kwargs)
