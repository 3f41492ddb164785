"""Two CPU processes (gloo) train with fixed-point correction and a random budget in step."""
import re
import sys

import pytest

pytestmark = pytest.mark.slow
CPU_ONLY = dict(CUDA_VISIBLE_DEVICES='')


def test_two_processes_train_with_correction_terms_and_random_budgets(tmp_path, seg_config,
                                                                       run_tool, free_port):
    # a loose tolerance lets each rank's solve stop after its own number of steps
    config = seg_config(tmp_path / 'cfg.py', max_iters=3, extra="""
norm_cfg = dict(type='GN', num_groups=4)
model = dict(backbone=dict(norm_cfg=norm_cfg, forward_solver=dict(tol=0.05),
                           backward=dict(_delete_=True, type='jfb')),
             decode_head=dict(norm_cfg=norm_cfg))
default_hooks = dict(logger=dict(interval=1))
custom_hooks = [dict(type='FixedPointCorrectionHook', n_states=2, gamma=0.8),
                dict(type='DEQRandomBudgetHook', delta=2),
                dict(type='DEQSolverStatsHook', warn_threshold=None)]
""")
    output = run_tool(['tools/dist_train.sh', config, '2', '--work-dir', str(tmp_path / 'w')],
                      env=dict(CPU_ONLY, PORT=free_port, PYTHON=sys.executable))
    last = re.search(r'Iter\(train\) \[\s*3/3\].*', output)
    assert last, output[-3000:]
    assert 'fpc0.decode.loss_ce' in last.group(0) and 'fpc1.decode.loss_ce' in last.group(0)
    assert (tmp_path / 'w' / 'iter_3.pth').exists()
