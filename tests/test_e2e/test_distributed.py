"""Two CPU processes (gloo): dist_train.sh runs, and DDP gradients equal one process's."""
import os.path as osp
import re
import sys

import pytest
import torch

pytestmark = pytest.mark.slow
WORKER = osp.join(osp.dirname(osp.abspath(__file__)), 'ddp_gradient_worker.py')
SKIP_WORKER = osp.join(osp.dirname(osp.abspath(__file__)), 'skip_step_worker.py')
CPU_ONLY = dict(CUDA_VISIBLE_DEVICES='')


def test_two_process_gradients_equal_single_process(tmp_path, run_tool, free_port):
    run_tool([WORKER, str(tmp_path / 'single.pt')], env=CPU_ONLY)
    run_tool(['-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port}',
              WORKER, str(tmp_path / 'ddp.pt')], env=CPU_ONLY)
    single = torch.load(tmp_path / 'single.pt')
    ddp = torch.load(tmp_path / 'ddp.pt')
    assert single.keys() == ddp.keys()
    for name, grad in single.items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(ddp[name], grad, rtol=1e-5, atol=1e-8, msg=name)


def test_every_rank_skips_the_step_when_one_rank_has_nan_gradients(tmp_path, run_tool,
                                                                   free_port):
    run_tool(['-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port}',
              SKIP_WORKER, str(tmp_path)], env=CPU_ONLY)
    for rank in (0, 1):
        assert torch.load(tmp_path / f'rank{rank}.pt') == dict(unchanged=True, skipped=1), rank


def test_dist_train_sh_runs_two_cpu_processes(tmp_path, seg_config, run_tool, free_port):
    config = seg_config(tmp_path / 'cfg.py', max_iters=4, extra="""
norm_cfg = dict(type='GN', num_groups=4)
model = dict(backbone=dict(norm_cfg=norm_cfg), decode_head=dict(norm_cfg=norm_cfg))
custom_hooks = [dict(type='DEQWarmupHook', warmup_iters=2),
                dict(type='DEQSolverStatsHook', warn_threshold=None)]
""")
    output = run_tool(['tools/dist_train.sh', config, '2', '--work-dir', str(tmp_path / 'w')],
                      env=dict(CPU_ONLY, PORT=free_port, PYTHON=sys.executable))
    assert 'world_size: 2' in output or 'Distributed launcher: pytorch' in output, output[-3000:]
    last = re.search(r'Iter\(train\) \[\s*4/4\].*', output)
    assert last, output[-3000:]
    # solver statistics of the equilibrium iterations, reduced over both ranks
    steps = float(re.search(r'train/deq_fwd_steps: ([0-9.]+)', last.group(0)).group(1))
    assert 1 <= steps <= 12
    assert (tmp_path / 'w' / 'iter_4.pth').exists()
