"""One SkipNonFiniteOptimWrapper update per rank, where only rank 1's gradients are NaN.

Run with ``torchrun --nproc_per_node=2 skip_step_worker.py OUT_DIR``. The model is not wrapped in
DDP, so gradients are not averaged: only the wrapper's reduced flag can make rank 0 skip. Each
rank saves whether its model state is unchanged and its count of skipped steps.
"""
import os.path as osp
import sys

import torch
import torch.distributed as dist
from torch import nn

from mdeq_mm.engine import SkipNonFiniteOptimWrapper, init_cpu_process_group


def main(out_dir: str) -> None:
    init_cpu_process_group()
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    wrapper = SkipNonFiniteOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    x = torch.rand(2, 4)
    if rank == 1:
        x[0, 0] = float('nan')
    with wrapper.optim_context(model):
        loss = model(x).square().mean()
    wrapper.update_params(loss)
    unchanged = all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    torch.save(dict(unchanged=unchanged, skipped=wrapper.skipped_steps),
               osp.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
