"""One training step of a tiny MDEQ under DDP on CPU; rank 0 saves the gradients.

Run with ``torchrun --nproc_per_node=N ddp_gradient_worker.py OUT``; with N=1 and no torchrun it
computes the single-process reference. Every rank takes its contiguous share of one fixed global
batch, so the averaged DDP gradients must equal the single-process gradients of the whole batch.
"""
import sys

import torch
import torch.distributed as dist

from mdeq_mm.engine import CPUDistributedDataParallel, init_cpu_process_group
from mdeq_mm.models import MDEQ

GLOBAL_BATCH = 4


def build_model() -> MDEQ:
    torch.manual_seed(0)
    return MDEQ(arch=dict(num_channels=(8, 16), expansion=2),
                norm_cfg=dict(type='GN', num_groups=4),
                forward_solver=dict(type='broyden', max_iter=6, tol=1e-6),
                backward=dict(type='implicit', solver='broyden', max_iter=8, tol=1e-6,
                              on_fail='accept')).double().train()


def batch():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(GLOBAL_BATCH, 3, 32, 32, generator=gen, dtype=torch.float64)
    weights = [torch.randn(GLOBAL_BATCH, c, 32 // s, 32 // s, generator=gen, dtype=torch.float64)
               for c, s in ((8, 4), (16, 8))]
    return images, weights


def main(out_path: str) -> None:
    distributed = init_cpu_process_group()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    model = build_model()
    images, weights = batch()
    share = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    net = CPUDistributedDataParallel(model, device_ids=[rank]) if distributed else model
    outs = net(images[share])
    loss = sum((o * w[share]).sum() for o, w in zip(outs, weights)) / (GLOBAL_BATCH // world)
    loss.backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, out_path)
    if distributed:
        dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
