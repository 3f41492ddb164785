"""The DEQ hooks in a Runner whose model lives on the GPU, trained with mmengine's AMP.

Marked ``cuda``: skipped (with the reason) where torch sees no GPU; ``tools/check_gpu.sh`` runs
it. mmengine's Runner moves the model to the GPU by itself when one is visible.
"""
import math

import pytest
from mmengine.runner import Runner


pytestmark = pytest.mark.cuda


def test_warmup_stats_eval_budget_and_jacobian_hooks_run_with_a_cuda_amp_runner(
        tmp_path_factory, runner_cfg, recorder_of, read_scalars, solver_max_iter, data_root):
    work_dir = str(tmp_path_factory.mktemp('cuda_run'))
    hooks = [
        dict(type='DEQWarmupHook', warmup_iters=2),
        dict(type='DEQSolverStatsHook'),
        dict(type='DEQEvalBudgetHook', max_iter=2, spectral_radius=True, power_iters=5),
        dict(type='JacobianRegHook', weight=0.5, prob=1.0),
    ]
    cfg = runner_cfg(data_root, work_dir, hooks, max_iters=4, val_interval=4, logger_interval=2)
    cfg.optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic',
                             optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
    runner = Runner.from_cfg(cfg)
    runner.train()

    assert all(p.is_cuda for p in runner.model.parameters())
    records = recorder_of(runner)
    assert [r['mode'] for r in records.train] == ['unrolled'] * 2 + ['equilibrium'] * 2
    for record in records.train[2:]:
        assert 1 <= max(record['fwd_steps']) <= solver_max_iter
        assert record['jacobian_loss'] is not None and math.isfinite(record['jacobian_loss'])
        assert math.isfinite(record['outputs']['loss'])
    assert max(s for r in records.val for s in r['fwd_steps']) <= 2
    (val_line, ) = [line for line in read_scalars(work_dir) if 'mIoU' in line]
    assert math.isfinite(val_line['val/deq_spectral_radius'])
