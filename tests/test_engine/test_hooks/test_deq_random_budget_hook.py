import pytest
from mmengine.runner import Runner

from mdeq_mm.engine.hooks import DEQRandomBudgetHook, get_mdeq_backbone
from mdeq_mm.models import MDEQ


def test_each_iteration_solves_with_its_seeded_budget_and_validation_keeps_its_own(
        data_root, tmp_path, runner_cfg, recorder_of, mdeq_backbone_cfg, solver_max_iter):
    # tol=0 never stops a sample, so every solve spends its whole budget
    backbone = mdeq_backbone_cfg(forward_solver=dict(type='broyden', max_iter=solver_max_iter,
                                                     tol=0.0))
    hooks = [dict(type='DEQRandomBudgetHook', delta=2, seed=3)]
    runner = Runner.from_cfg(runner_cfg(data_root, str(tmp_path), hooks, max_iters=6,
                                        val_interval=6, backbone=backbone))
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, DEQRandomBudgetHook))
    records = recorder_of(runner)
    budgets = [hook.budget_at(i) for i in range(6)]
    assert all(solver_max_iter - 2 <= b <= solver_max_iter + 2 for b in budgets)
    assert len(set(budgets)) > 1
    assert [r['hub']['train/deq_budget'] for r in records.train] == budgets
    assert [max(r['fwd_steps']) for r in records.train] == budgets
    assert all(max(r['fwd_steps']) == solver_max_iter for r in records.val)
    assert get_mdeq_backbone(runner.model, 'test').deq.train_max_iter is None


def test_the_draw_is_reproducible_and_depends_on_the_seed(mdeq_backbone_cfg):
    backbone = MDEQ(**{k: v for k, v in mdeq_backbone_cfg().items() if k != 'type'})
    hooks = [DEQRandomBudgetHook(delta=3, seed=seed) for seed in (0, 0, 1)]
    for hook in hooks:
        hook.backbone = backbone
    draws = [[hook.budget_at(i) for i in range(20)] for hook in hooks]
    assert draws[0] == draws[1] != draws[2]
    assert min(draws[0]) >= 1


@pytest.mark.parametrize('kwargs,match', [
    (dict(delta=-1), 'delta must be an int >= 0, got -1'),
    (dict(delta=1.5), 'delta must be an int >= 0, got 1.5'),
    (dict(delta=1, seed=-1), 'seed must be an int >= 0, got -1'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DEQRandomBudgetHook(**kwargs)
