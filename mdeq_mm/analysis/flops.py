"""FLOPs of a model (per image) and the achieved GFLOP/s of convolutions."""
from typing import Callable, Dict, Tuple

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from .models import find_mdeq, task_of

# A plain 3x3 convolution large enough to reach the machine's convolution throughput; the
# reference against which the convolutions of f are compared.
REFERENCE_CONV = dict(channels=256, size=64)


class _ModuleOf(nn.Module):
    """A callable as a module (mmengine's FLOP counter traces modules)."""

    def __init__(self, fn: Callable, owner: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.owner = owner

    def forward(self, *args: Tensor):
        return self.fn(*args)


def count_flops(model: nn.Module, x: Tensor) -> Dict[str, float]:
    """FLOPs per image by mmengine's ``get_model_complexity_info`` (one multiply-add = 1 FLOP).

    An MDEQ's f is counted once (at its start state), and the stem with injection plus the
    head once, so the total of an inference with ``n`` f-evaluations is
    ``flops_outside_f + n * flops_f``. Other models are counted whole (``flops``).

    Args:
        model (nn.Module): An mmseg segmentor or mmpretrain classifier, in eval mode.
        x (Tensor): Its input batch; only the first image is used.

    Returns:
        dict: ``flops`` or ``flops_f`` and ``flops_outside_f``.
    """
    from mmengine.analysis import get_model_complexity_info

    def flops(fn: Callable, inputs: Tuple[Tensor, ...]) -> float:
        info = get_model_complexity_info(_ModuleOf(fn, model), inputs=inputs,
                                         show_table=False, show_arch=False)
        return float(info['flops'])

    def head(*feats: Tensor) -> Tensor:
        if task_of(model) == 'seg':
            return model.decode_head(feats)
        out = model.neck(feats) if model.with_neck else feats
        return model.head(out)

    x = x[:1]
    mdeq = find_mdeq(model)
    with torch.no_grad():
        if mdeq is None:
            return {'flops': flops(lambda inp: model(inp, mode='tensor'), (x, ))}
        f, z0 = mdeq.fixed_point_problem(x)
        return {
            'flops_f': flops(lambda *z: tuple(f(z)), z0),
            'flops_outside_f': (flops(lambda inp: mdeq.injection_of(inp)[0], (x, )) +
                                flops(head, z0)),
        }


def conv_throughput(fn: Callable[[], object], repeats: int = 3) -> Dict[str, float]:
    """FLOPs and seconds of the 2-d convolutions run by ``fn``, by torch's profiler.

    The profiler counts a multiply-add as 2 FLOPs; only the ratio of two such measurements
    on the same machine is meaningful across machines.

    Args:
        fn (Callable): Runs the code to measure (call it once before, to warm up).
        repeats (int): Calls of ``fn`` profiled. Defaults to 3.

    Returns:
        dict: ``flops``, ``seconds`` and ``gflops_per_s`` of the convolutions.
    """
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(repeats):
            fn()
    convs = [e for e in prof.key_averages() if e.key == 'aten::conv2d']
    flops = float(sum(e.flops for e in convs))
    seconds = sum(e.cpu_time_total for e in convs) * 1e-6
    return dict(flops=flops, seconds=seconds, gflops_per_s=flops / seconds / 1e9 if seconds
                else 0.0)


def reference_conv_throughput(repeats: int = 3) -> Dict[str, float]:
    """:func:`conv_throughput` of one large plain 3x3 convolution (:data:`REFERENCE_CONV`)."""
    c, s = REFERENCE_CONV['channels'], REFERENCE_CONV['size']
    conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
    x = torch.randn(1, c, s, s)
    with torch.no_grad():
        conv(x)
        return conv_throughput(lambda: conv(x), repeats)
