"""Two CPU processes (gloo): dist_train.sh runs, and DDP gradients equal one process's."""
import os
import os.path as osp
import random
import re
import subprocess
import sys

import pytest
import torch

from .conftest import REPO, write_seg_config

pytestmark = pytest.mark.slow
WORKER = osp.join(osp.dirname(osp.abspath(__file__)), 'ddp_gradient_worker.py')
SKIP_WORKER = osp.join(osp.dirname(osp.abspath(__file__)), 'skip_step_worker.py')


def free_port():
    return str(random.randint(20000, 40000))


def run(cmd, env=None, timeout=900):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'CUDA_VISIBLE_DEVICES': '', **(env or {})})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    return output


def test_two_process_gradients_equal_single_process(tmp_path):
    run([sys.executable, WORKER, str(tmp_path / 'single.pt')])
    run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', WORKER, str(tmp_path / 'ddp.pt')])
    single = torch.load(tmp_path / 'single.pt')
    ddp = torch.load(tmp_path / 'ddp.pt')
    assert single.keys() == ddp.keys()
    for name, grad in single.items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(ddp[name], grad, rtol=1e-5, atol=1e-8, msg=name)


def test_every_rank_skips_the_step_when_one_rank_has_nan_gradients(tmp_path):
    run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', SKIP_WORKER, str(tmp_path)])
    for rank in (0, 1):
        assert torch.load(tmp_path / f'rank{rank}.pt') == dict(unchanged=True, skipped=1), rank


def test_dist_train_sh_runs_two_cpu_processes(tmp_path, seg_data_root):
    config = write_seg_config(tmp_path / 'cfg.py', seg_data_root, max_iters=4, extra="""
norm_cfg = dict(type='GN', num_groups=4)
model = dict(backbone=dict(norm_cfg=norm_cfg), decode_head=dict(norm_cfg=norm_cfg))
custom_hooks = [dict(type='DEQWarmupHook', warmup_iters=2),
                dict(type='DEQSolverStatsHook', warn_threshold=None)]
""")
    output = run(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(tmp_path / 'w')],
                 env=dict(PORT=free_port(), PYTHON=sys.executable))
    assert 'world_size: 2' in output or 'Distributed launcher: pytorch' in output, output[-3000:]
    last = re.search(r'Iter\(train\) \[\s*4/4\].*', output)
    assert last, output[-3000:]
    # solver statistics of the equilibrium iterations, reduced over both ranks
    steps = float(re.search(r'deq_fwd_steps: ([0-9.]+)', last.group(0)).group(1))
    assert 1 <= steps <= 12
    assert (tmp_path / 'w' / 'iter_4.pth').exists()
