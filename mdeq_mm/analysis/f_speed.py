"""The speed of f itself: eager against ``channels_last`` and ``torch.compile``.

f is measured where the solvers use it: a no-grad evaluation (one forward solver step) and an
evaluation with one vector-Jacobian product (one implicit backward step), at the equilibrium
of an MDEQ's own problem. Variants are timed in interleaved rounds; their ratios to eager are
per-round medians with their spread. ``torch.compile``'s first call is reported separately as
the compile time. Convolution throughput of f is compared with a large plain convolution.
"""
import copy
import dataclasses
from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import Tensor

from mdeq_mm.models import MDEQ

from .flops import conv_throughput, reference_conv_throughput
from .timing import RatioSummary, interleaved_times, time_call

StateFn = Callable[[Sequence[Tensor]], Tuple[Tensor, ...]]


def _channels_last(z: Sequence[Tensor]) -> Tuple[Tensor, ...]:
    return tuple(t.contiguous(memory_format=torch.channels_last) for t in z)


def _evaluations(f: StateFn, z: Sequence[Tensor]) -> Dict[str, Callable[[], object]]:
    """A no-grad call of ``f`` at ``z``, and a call with one vector-Jacobian product."""
    z_grad = tuple(t.detach().requires_grad_() for t in z)

    def forward() -> object:
        with torch.no_grad():
            return f(z)

    def forward_vjp() -> object:
        out = f(z_grad)
        return torch.autograd.grad(out, z_grad, out)

    return {'forward': forward, 'forward_vjp': forward_vjp}


def f_evaluations(mdeq: MDEQ, x: Tensor,
                  compile_f: bool = False) -> Dict[str, Dict[str, Callable[[], object]]]:
    """The evaluations of f that :func:`f_variants` times, per variant of f, at the
    equilibrium of ``mdeq`` on images ``x``: each variant's ``'forward'`` returns f(z*) and its
    ``'forward_vjp'`` the vector-Jacobian product with f(z*), so variants can be checked
    against eager.

    Args:
        mdeq (MDEQ): The backbone (put in eval mode; a copy is made for ``channels_last``).
        x (Tensor): Images (B, 3, H, W).
        compile_f (bool): Also ``torch.compile`` f. Defaults to False.

    Returns:
        dict: ``{'eager': ..., 'channels_last': ...[, 'compiled': ...]}``, each
        ``{'forward': call, 'forward_vjp': call}``.
    """
    mdeq.eval()
    with torch.no_grad():
        f, z0 = mdeq.fixed_point_problem(x)
        z_star = mdeq.deq(f, z0)
        fast = copy.deepcopy(mdeq).to(memory_format=torch.channels_last)
        f_cl, _ = fast.fixed_point_problem(x.contiguous(memory_format=torch.channels_last))
    variants = {'eager': _evaluations(f, z_star),
                'channels_last': _evaluations(f_cl, _channels_last(z_star))}
    if compile_f:
        variants['compiled'] = _evaluations(torch.compile(f), z_star)
    return variants


def f_variants(mdeq: MDEQ, x: Tensor, rounds: int,
               compile_f: bool = False) -> Dict[str, dict]:
    """Time eager f against its variants at the equilibrium of ``mdeq`` on images ``x``.

    Args:
        mdeq (MDEQ): The backbone (put in eval mode; a copy is made for ``channels_last``).
        x (Tensor): Images (B, 3, H, W).
        rounds (int): Interleaved rounds per evaluation kind.
        compile_f (bool): Also time ``torch.compile`` of f (its compile time can be minutes
            on a CPU). Defaults to False.

    Returns:
        dict: Per evaluation kind ('forward', 'forward_vjp'): per variant the seconds per
        round, and ``'<variant>/eager_over_variant'``, a :class:`RatioSummary` as a dict
        (above 1: the variant is faster); with ``compile_f``, ``'compile_s'`` (first calls).
    """
    variants = f_evaluations(mdeq, x, compile_f)
    compile_s = {}
    if compile_f:
        compile_s = {kind: time_call(run) for kind, run in variants['compiled'].items()}
    out: Dict[str, dict] = {}
    for kind in ('forward', 'forward_vjp'):
        runs = {name: evals[kind] for name, evals in variants.items()}
        for run in runs.values():
            run()
        times = interleaved_times({name: lambda run=run: time_call(run)
                                   for name, run in runs.items()}, rounds)
        result: Dict[str, object] = {f'{name}_s': t for name, t in times.items()}
        for name in runs:
            if name != 'eager':
                result[f'{name}/eager_over_variant'] = dataclasses.asdict(
                    RatioSummary.of(times['eager'], times[name]))
        if kind in compile_s:
            result['compile_s'] = compile_s[kind]
        out[kind] = result
    return out


def f_conv_efficiency(mdeq: MDEQ, x: Tensor) -> Dict[str, float]:
    """Achieved GFLOP/s of f's convolutions (no-grad, at the start state) and of a large plain
    3x3 convolution, and their ratio."""
    mdeq.eval()
    with torch.no_grad():
        f, z0 = mdeq.fixed_point_problem(x)
        z = f(z0)
        in_f = conv_throughput(lambda: f(z))
    reference = reference_conv_throughput()
    return dict(f_gflops_per_s=in_f['gflops_per_s'],
                reference_gflops_per_s=reference['gflops_per_s'],
                f_over_reference=in_f['gflops_per_s'] / reference['gflops_per_s'])
