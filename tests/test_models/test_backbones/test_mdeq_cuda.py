"""MDEQ on CUDA: the same numbers as on the CPU, dropout masks on the GPU, AMP training steps.

Marked ``cuda``: skipped (with the reason) where torch sees no GPU; ``tools/check_gpu.sh`` runs
them. Float64 keeps the CPU/GPU comparison free of TF32 and kernel-order effects, so a small
tolerance holds after a fixed solver budget.
"""
import copy

import pytest
import torch
from mmengine.optim import AmpOptimWrapper

from mdeq_mm.models import MDEQ
from mdeq_mm.models.layers import VariationalDropout2d

pytestmark = pytest.mark.cuda
TINY = dict(num_channels=(8, 16), expansion=2)
BUDGET = 8
BACKWARDS = {
    'implicit': dict(type='implicit', solver='broyden', max_iter=BUDGET, tol=1e-4),
    'phantom': dict(type='phantom', k=4, tau=0.6),
}


def tiny_mdeq(backward='implicit', **kwargs):
    torch.manual_seed(0)
    return MDEQ(arch=TINY, forward_solver=dict(type='broyden', max_iter=BUDGET, tol=1e-4),
                backward=BACKWARDS[backward], **kwargs)


def train_step(model, x, weights):
    """Outputs and parameter gradients of ``sum(w_i * z_i)``."""
    model.zero_grad()
    outs = model(x)
    sum((w * out).sum() for w, out in zip(weights, outs)).backward()
    grads = {name: p.grad.detach().cpu() for name, p in model.named_parameters()}
    return [out.detach().cpu() for out in outs], grads


@pytest.mark.parametrize('backward', sorted(BACKWARDS))
def test_cuda_forward_and_backward_match_cpu(backward):
    cpu = tiny_mdeq(backward).double().train()
    gpu = copy.deepcopy(cpu).cuda()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=gen, dtype=torch.float64)
    weights = [torch.randn(2, c, 32 // s, 32 // s, generator=gen, dtype=torch.float64)
               for c, s in zip(TINY['num_channels'], (4, 8))]

    outs_cpu, grads_cpu = train_step(cpu, x, weights)
    outs_gpu, grads_gpu = train_step(gpu, x.cuda(), [w.cuda() for w in weights])
    for out_cpu, out_gpu in zip(outs_cpu, outs_gpu):
        torch.testing.assert_close(out_gpu, out_cpu, rtol=1e-6, atol=1e-8)
    assert grads_gpu.keys() == grads_cpu.keys()
    for name, grad in grads_cpu.items():
        torch.testing.assert_close(grads_gpu[name], grad, rtol=1e-6, atol=1e-8, msg=name)
    assert gpu.last_forward_stats.steps.device.type == 'cuda'


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_dropout_mask_lives_on_the_input_device_and_dtype(dtype):
    drop = VariationalDropout2d(0.5).train()
    x = torch.rand(2, 8, 4, 4, device='cuda', dtype=dtype)
    drop.reset_mask(x)
    assert drop.mask.device == x.device and drop.mask.dtype == dtype
    assert drop(x).device == x.device


def test_mdeq_with_dropout_trains_on_cuda():
    model = tiny_mdeq(dropout=0.3).cuda().train()
    outs = model(torch.rand(2, 3, 32, 32, device='cuda'))
    sum(out.sum() for out in outs).backward()
    assert all(m.mask.is_cuda for m in model.modules() if isinstance(m, VariationalDropout2d))
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize('backward', sorted(BACKWARDS))
def test_amp_training_step_keeps_the_solver_state_in_float32(backward):
    model = tiny_mdeq(backward).cuda().train()
    optim_wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    x = torch.rand(2, 3, 32, 32, device='cuda')
    with optim_wrapper.optim_context(model):
        outs = model(x)
        loss = sum(out.float().pow(2).mean() for out in outs)
    assert all(out.dtype == torch.float32 for out in outs)
    optim_wrapper.update_params(loss)

    stats = [model.last_forward_stats]
    if backward == 'implicit':
        stats.append(model.last_backward_stats)
    for stat in stats:  # the traces are allocated like the solver's iterates
        assert stat.abs_trace.dtype == torch.float32 and stat.abs_trace.is_cuda
        assert torch.isfinite(stat.abs_res).all()
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
