"""FLOPs and parameters per image, with a DEQ's FLOPs split by how often each part runs, and
the achieved GFLOP/s of convolutions.

A deep-equilibrium model has no fixed FLOP count: its stem, input injection and head run once
per image, its layer f once per solver step. The honest figure of an inference that evaluates
f ``nfe`` times is ``once + nfe * f`` (:class:`Complexity`); ``nfe`` is at most the evaluation
budget, and :func:`measure_nfe` measures what trained weights need on real images. FLOPs come
from mmengine's jit-tracing counter (one multiply-add = 1 FLOP; convolutions, matrix products,
norms and upsampling; other element-wise operations are not counted), as in mmseg's and
mmpretrain's ``get_flops.py``.
"""
import os
import os.path as osp
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from mdeq_mm.models import MDEQ
from .data import to_inputs
from .models import find_mdeq

# A plain 3x3 convolution large enough to reach the machine's convolution throughput; the
# reference against which the convolutions of f are compared.
REFERENCE_CONV = dict(channels=256, size=64)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
# Parameters that take no part in inference (mmseg's get_flops.py drops the auxiliary head).
TRAINING_ONLY_PREFIXES = ('auxiliary_head.', )


class _ModuleOf(nn.Module):
    """A callable as a module (mmengine's FLOP counter traces modules); ``owner`` makes the
    parameters the callable uses the module's own."""

    def __init__(self, fn: Callable, owner: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.owner = owner

    def forward(self, *args: Tensor):
        return self.fn(*args)


def traced_flops(fn: Callable, inputs: Tuple[Tensor, ...],
                 owner: Optional[nn.Module] = None) -> float:
    """FLOPs of one call ``fn(*inputs)``, counted by mmengine's ``FlopAnalyzer`` on its trace.

    Only the operations the call executes are in the trace: for a DEQ, the solver steps this
    input took.

    Args:
        fn (Callable): The computation: a module (e.g. a model, whose default mode is
            ``'tensor'``) or a function of tensors.
        inputs (tuple[Tensor]): Its arguments.
        owner (nn.Module, optional): The module whose parameters a function ``fn`` uses.

    Returns:
        float: The FLOPs (one multiply-add = 1).

    Example:
        >>> conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
        >>> traced_flops(conv, (torch.zeros(1, 2, 8, 8), ))  # 8*8 pixels x 4*2*3*3 weights
        4608.0
    """
    from mmengine.analysis import FlopAnalyzer
    module = fn if isinstance(fn, nn.Module) else _ModuleOf(fn, owner or nn.Module())
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return float(analyzer.total())


def eval_budget(mdeq: MDEQ) -> int:
    """The f-evaluation budget of an MDEQ's evaluation forward: ``eval_max_iter``, else the
    forward solver's ``max_iter``.

    Example:
        >>> eval_budget(MDEQ(arch=dict(num_channels=(8, )), eval_max_iter=12))
        12
    """
    return mdeq.eval_max_iter or mdeq.deq.forward_cfg.max_iter


@contextmanager
def evaluation_budget(mdeq: MDEQ, budget: int) -> Iterator[None]:
    """Set an MDEQ's evaluation budget (``eval_max_iter``) inside the block, then restore it."""
    saved = mdeq.eval_max_iter
    mdeq.eval_max_iter = budget
    try:
        yield
    finally:
        mdeq.eval_max_iter = saved


def inference_params(model: nn.Module) -> int:
    """Parameters of ``model`` used at inference (an auxiliary head's are left out)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith(TRAINING_ONLY_PREFIXES))


@dataclass(frozen=True)
class Complexity:
    """FLOPs per image and parameters of a model at one input size.

    For an MDEQ model, an inference that evaluates f ``nfe`` times costs
    ``flops_once + nfe * flops_f`` (:meth:`total`): stem, injection and head run once, f at
    every solver step, at most ``budget`` times. For any other model ``flops_once`` is its
    whole forward and ``flops_f`` and ``budget`` are None.

    Args:
        input_shape (tuple[int, int]): ``(H, W)`` of the input.
        params (int): Parameters used at inference.
        flops_once (float): FLOPs that run once per image.
        flops_f (float, optional): FLOPs of one evaluation of f (DEQ only).
        budget (int, optional): The evaluation budget of f-evaluations (DEQ only).

    Example:
        >>> c = Complexity((64, 64), params=10, flops_once=5.0, flops_f=2.0, budget=4)
        >>> c.total(), c.total(2.5)
        (13.0, 10.0)
    """

    input_shape: Tuple[int, int]
    params: int
    flops_once: float
    flops_f: Optional[float] = None
    budget: Optional[int] = None

    @property
    def is_deq(self) -> bool:
        """Whether the FLOPs depend on the number of f-evaluations."""
        return self.flops_f is not None

    def total(self, nfe: Optional[float] = None) -> float:
        """FLOPs of an inference with ``nfe`` evaluations of f (default: the budget)."""
        if self.flops_f is None:
            return self.flops_once
        return self.flops_once + (self.budget if nfe is None else nfe) * self.flops_f


def padded_shape(model: nn.Module, shape: Sequence[int]) -> Tuple[int, int]:
    """``(H, W)`` from one or two sizes, rounded up to a multiple of an MDEQ backbone's total
    stride (as a data preprocessor's ``size_divisor`` pads it).

    Example:
        >>> padded_shape(nn.Identity(), [224])
        (224, 224)
    """
    if len(shape) not in (1, 2) or any(s < 1 for s in shape):
        raise ValueError(f'shape must be one or two positive sizes (H [W]), got {list(shape)}')
    h, w = (shape[0], shape[0]) if len(shape) == 1 else shape
    mdeq = _mdeq_of(model)
    if mdeq is not None:
        stride = mdeq.total_stride
        h, w = -(-h // stride) * stride, -(-w // stride) * stride
    return int(h), int(w)


def _mdeq_of(model: nn.Module) -> Optional[MDEQ]:
    """``model`` itself if it is an MDEQ, else its MDEQ backbone, or None."""
    return model if isinstance(model, MDEQ) else find_mdeq(model)


def model_complexity(model: nn.Module, input_shape: Tuple[int, int]) -> Complexity:
    """FLOPs per image and parameters of an mmseg segmentor, an mmpretrain classifier or a
    backbone.

    Counts the model's ``'tensor'`` mode forward (backbone, neck, head; no loss, no
    post-processing) on one random image. For an MDEQ (backbone), f is counted alone, and the
    rest as the forward at a budget of one evaluation minus that evaluation.

    Args:
        model (nn.Module): The model; it is put in eval mode.
        input_shape (tuple[int, int]): ``(H, W)``, divisible by an MDEQ's total stride.

    Returns:
        Complexity: The figures.

    Example:
        >>> mdeq = MDEQ(arch=dict(num_channels=(8, 16), expansion=2), eval_max_iter=4)
        >>> c = model_complexity(mdeq, (32, 32))
        >>> c.budget, c.total() == c.flops_once + 4 * c.flops_f
        (4, True)
    """
    model.eval()
    x = torch.rand(1, 3, *input_shape, generator=torch.Generator().manual_seed(0))
    params = inference_params(model)
    mdeq = _mdeq_of(model)
    with torch.no_grad():
        if mdeq is None:
            return Complexity(input_shape, params, traced_flops(model, (x, )))
        f, z0 = mdeq.fixed_point_problem(x)
        flops_f = traced_flops(lambda *z: tuple(f(z)), z0, model)
        mdeq.f.release()
        with evaluation_budget(mdeq, 1):
            one_step = traced_flops(model, (x, ))
    return Complexity(input_shape, params, one_step - flops_f, flops_f, eval_budget(mdeq))


def count_flops(model: nn.Module, x: Tensor) -> Dict[str, float]:
    """FLOPs per image of ``model`` at the size of ``x``, as a dict for reports.

    Args:
        model (nn.Module): An mmseg segmentor or mmpretrain classifier.
        x (Tensor): An input batch; only its size is used.

    Returns:
        dict: ``flops`` for a plain model; ``flops_f`` (one evaluation of f) and
        ``flops_outside_f`` (stem, injection and head) for an MDEQ one.
    """
    c = model_complexity(model, tuple(x.shape[-2:]))
    if not c.is_deq:
        return {'flops': c.flops_once}
    return {'flops_f': c.flops_f, 'flops_outside_f': c.flops_once}


@dataclass
class NFEMeasurement:
    """f-evaluations of an MDEQ's evaluation solve, per image (each solved alone).

    Args:
        steps (list[int]): Evaluations until the image's solve stopped (reached ``tol``, was
            flagged, or spent the budget).
        evaluations (list[int]): Evaluations executed: ``steps`` plus those the solve loop
            ran before testing for its early exit (every ``check_every`` steps) and those of
            a ``'fixed_point'`` fallback re-solve (after NaN/Inf or divergence).
    """

    steps: List[int] = field(default_factory=list)
    evaluations: List[int] = field(default_factory=list)

    @property
    def mean_steps(self) -> float:
        """Mean f-evaluations to stop."""
        return float(np.mean(self.steps))

    @property
    def mean_evaluations(self) -> float:
        """Mean f-evaluations executed."""
        return float(np.mean(self.evaluations))


def measure_nfe(mdeq: MDEQ, images: Iterable[Tensor]) -> NFEMeasurement:
    """Solve each image alone with the MDEQ's evaluation settings and count its f-evaluations.

    Args:
        mdeq (MDEQ): The backbone, with its (trained) weights; it is put in eval mode.
        images (Iterable[Tensor]): Normalized images, ``(3, H, W)`` or ``(1, 3, H, W)``.

    Returns:
        NFEMeasurement: The counts per image.

    Example:
        >>> mdeq = MDEQ(arch=dict(num_channels=(8, )), forward_solver=dict(max_iter=5, tol=0))
        >>> measure_nfe(mdeq, [torch.rand(3, 16, 16)] * 2).steps
        [5, 5]
    """
    mdeq.eval()
    out = NFEMeasurement()
    with torch.no_grad():
        for x in images:
            mdeq(x.reshape(1, *x.shape[-3:]))
            stats, fallback = mdeq.last_forward_stats, mdeq.deq.last_fallback_stats
            out.steps.append(int(stats.steps[0]))
            out.evaluations.append(stats.nfe + (fallback.nfe if fallback is not None else 0))
    if not out.steps:
        raise ValueError('measure_nfe got no images')
    return out


def image_files(paths: Sequence[str]) -> List[str]:
    """Image files among ``paths``, a directory standing for the images below it (sorted)."""
    files: List[str] = []
    for path in paths:
        if osp.isdir(path):
            files += sorted(osp.join(root, name) for root, _, names in os.walk(path)
                            for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
        elif osp.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f'no image file or directory {path!r}')
    if not files:
        raise ValueError(f'no image files ({", ".join(IMAGE_EXTENSIONS)}) in {list(paths)}')
    return files


def file_inputs(model: nn.Module, paths: Sequence[str],
                input_shape: Tuple[int, int]) -> Iterator[Tensor]:
    """The images in ``paths`` (files or directories), resized to ``(H, W)`` and normalized
    as ``model``'s data preprocessor does, one ``(1, 3, H, W)`` tensor each."""
    import mmcv
    h, w = input_shape
    for path in image_files(paths):
        image = mmcv.imresize(mmcv.imread(path, channel_order='rgb'), (w, h))
        yield to_inputs(model, image[None])


def dataloader_inputs(model: nn.Module, dataloader_cfg: dict, num: int,
                      input_shape: Tuple[int, int]) -> Iterator[Tensor]:
    """The first ``num`` images of a config's dataloader (e.g. ``cfg.test_dataloader``),
    through the model's data preprocessor, resized to ``(H, W)``, one ``(1, 3, H, W)`` tensor
    each. The config's default scope must be set (e.g. by :func:`build_model`)."""
    from mmengine.runner import Runner
    if num < 1:
        raise ValueError(f'num must be >= 1, got {num}')
    loader = Runner.build_dataloader(dataloader_cfg)
    done = 0
    with torch.no_grad():
        for batch in loader:
            inputs = model.data_preprocessor(batch, False)['inputs']
            for x in inputs.split(1):
                yield F.interpolate(x.float(), size=input_shape, mode='bilinear',
                                    align_corners=False)
                done += 1
                if done == num:
                    return


def format_complexity(c: Complexity, measured: Optional[NFEMeasurement] = None,
                      tol: Optional[float] = None) -> str:
    """The figures as mmseg's ``get_flops.py`` prints them (``Input shape``, ``Flops``,
    ``Params``), for a DEQ with its once-per-image part, f, and the totals at the budget and
    at the measured mean f-evaluations.

    Example:
        >>> print(format_complexity(Complexity((64, 64), 2_000_000, 1e9)))
        Input shape: (3, 64, 64)
        Flops: 1G
        Params: 2.00M
    """
    def gflops(flops: float) -> str:
        return f'{flops / 1e9:.4g}G'

    lines = [f'Input shape: (3, {c.input_shape[0]}, {c.input_shape[1]})',
             f'Flops: {gflops(c.total())}' + (f' (at the budget of {c.budget} f-evaluations)'
                                               if c.is_deq else ''),
             f'Params: {c.params / 1e6:.2f}M']
    if not c.is_deq:
        return '\n'.join(lines)
    once, f = gflops(c.flops_once), gflops(c.flops_f)
    lines += [f'Once per image (stem, injection, head): {once}',
              f'One evaluation of f: {f}',
              f'Total at the budget: {once} + {c.budget} x {f} = {gflops(c.total())}']
    if measured is not None:
        steps, executed = measured.mean_steps, measured.mean_evaluations
        at = f' to reach tol={tol:g}' if tol is not None else ''
        lines += [f'Measured on {len(measured.steps)} image(s): mean {steps:.2f} '
                  f'f-evaluations{at} (min {min(measured.steps)}, max {max(measured.steps)}), '
                  f'{executed:.2f} executed',
                  f'Total at the measured mean: {once} + {steps:.2f} x {f} = '
                  f'{gflops(c.total(steps))} ({gflops(c.total(executed))} executed)']
    return '\n'.join(lines)


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
