"""Fixed-budget export of MDEQ segmentors and classifiers to ONNX, checked in ONNX Runtime.

At a fixed solver budget an MDEQ is a static graph: the backbone's ``eval_fixed_budget``
mode (:func:`mdeq_mm.deq.solve_fixed_budget`) spends exactly ``budget`` evaluations of f
without host syncs, so ``torch.onnx.export`` can trace it. The exported graph takes the
normalized ``(N, 3, H, W)`` images (the data preprocessor's output, as mmdeploy's do) and
returns the model's ``mode='tensor'`` output: a segmentor's decode-head logits at the
head's resolution, a classifier's class scores. ``onnx`` and ``onnxruntime`` are optional
dependencies, imported only here.
"""
import warnings
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mdeq_mm.models import MDEQ

DEFAULT_OPSET = 17
INPUT_NAME = 'input'
OUTPUT_NAME = 'output'


class TensorOutput(nn.Module):
    """An mmseg segmentor or mmpretrain classifier as a plain ``inputs -> logits`` module.

    Args:
        model (nn.Module): The model; its ``forward(inputs, mode='tensor')`` gives the logits.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor) -> Tensor:
        return self.model(inputs, mode='tensor')


def _mdeq_of(model: nn.Module) -> MDEQ:
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, MDEQ):
        raise ValueError('fixed-budget export needs a model whose backbone is an MDEQ, got '
                         f'{type(model).__name__} with backbone {type(backbone).__name__}')
    return backbone


def check_exportable(model: nn.Module, shape: Sequence[int], budget: int) -> None:
    """Raise a ValueError naming what keeps ``model`` from a fixed-budget export, if anything.

    Refused: a model in training mode (its solve feeds an implicit backward), a model
    without an MDEQ backbone, a segmentor configured for sliding-window inference (a Python
    loop over crops; export whole-image inference), a budget below 1 and an input shape
    the backbone cannot take.

    Args:
        model (nn.Module): An mmseg segmentor or mmpretrain classifier.
        shape (Sequence[int]): The input shape ``(N, C, H, W)``.
        budget (int): Evaluations of f in the exported solve.
    """
    if model.training:
        raise ValueError('the model is in training mode: call model.eval() before exporting '
                         '(training solves feed an implicit backward and cannot be exported)')
    mdeq = _mdeq_of(model)
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ValueError(f'budget must be an int >= 1 (evaluations of f), got {budget!r}')
    test_cfg = getattr(model, 'test_cfg', None) or {}
    if hasattr(model, 'decode_head') and test_cfg.get('mode', 'whole') != 'whole':
        raise ValueError(f"test_cfg mode {test_cfg.get('mode')!r} runs the model on crops in a "
                         "Python loop and cannot be exported; export whole-image inference "
                         "(--cfg-options model.test_cfg.mode=whole) and tile outside the graph")
    if len(shape) != 4 or shape[1] != mdeq.in_channels:
        raise ValueError(f'shape must be (N, {mdeq.in_channels}, H, W), got {tuple(shape)}')
    if shape[2] % mdeq.total_stride or shape[3] % mdeq.total_stride:
        raise ValueError(f'the input height and width must be divisible by the backbone '
                         f'stride {mdeq.total_stride}, got {shape[2]}x{shape[3]}')


@contextmanager
def fixed_budget(model: nn.Module, budget: int, enabled: bool = True) -> Iterator[nn.Module]:
    """Within the block the MDEQ backbone evaluates with ``eval_max_iter = budget`` and, if
    ``enabled``, ``eval_fixed_budget``; both are restored afterwards.

    Example:
        >>> import torch
        >>> from mdeq_mm.models import MDEQ
        >>> model = torch.nn.Module()
        >>> model.backbone = MDEQ(arch=dict(num_channels=(8, 16), expansion=2))
        >>> with fixed_budget(model, 3):
        ...     (model.backbone.eval_max_iter, model.backbone.eval_fixed_budget)
        (3, True)
        >>> (model.backbone.eval_max_iter, model.backbone.eval_fixed_budget)
        (None, False)
    """
    mdeq = _mdeq_of(model)
    saved = mdeq.eval_max_iter, mdeq.eval_fixed_budget
    mdeq.eval_max_iter, mdeq.eval_fixed_budget = budget, enabled
    try:
        yield model
    finally:
        mdeq.eval_max_iter, mdeq.eval_fixed_budget = saved


def export_onnx(model: nn.Module,
                path: str,
                shape: Sequence[int],
                budget: int,
                dynamic_batch: bool = False,
                opset_version: int = DEFAULT_OPSET,
                dynamo: bool = False) -> None:
    """Export ``model`` with a ``budget``-step solve to the ONNX file ``path``.

    Args:
        model (nn.Module): An mmseg segmentor or mmpretrain classifier with an MDEQ backbone,
            in eval mode.
        path (str): The ``.onnx`` file to write.
        shape (Sequence[int]): Input shape ``(N, C, H, W)`` traced for the export.
        budget (int): Evaluations of f in the exported solve (see the anytime curve of
            ``tools/analysis_tools/analyze_solver.py`` to pick it).
        dynamic_batch (bool): Leave the batch dimension free (TorchScript exporter only).
            Height and width stay fixed: the solver state's per-image size is part of the
            graph. Defaults to False.
        opset_version (int): ONNX opset. Defaults to 17.
        dynamo (bool): Use the ``torch.export`` based exporter instead of the TorchScript
            one (it needs ``onnxscript``, writes opset 18 at least and takes several times
            longer). Defaults to False.
    """
    check_exportable(model, shape, budget)
    param = next(model.parameters())
    dummy = torch.zeros(tuple(shape), dtype=param.dtype, device=param.device)
    wrapper = TensorOutput(model).eval()
    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                  opset_version=opset_version, dynamo=dynamo)
    if dynamic_batch:
        if dynamo:
            raise ValueError('dynamic_batch needs the TorchScript exporter (dynamo=False): '
                             'torch.export fixes the batch size of the solver state')
        kwargs['dynamic_axes'] = {INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}}
    with fixed_budget(model, budget), torch.no_grad(), warnings.catch_warnings():
        # the tracer warns where Python reads a shape (the input and state checks); shapes
        # are fixed per file, so those reads are constants of the graph by design
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(wrapper, (dummy, ), path, **kwargs)


def run_onnx(path: str, inputs: Tensor, threads: Optional[int] = None):
    """The output of the ONNX file ``path`` for ``inputs`` in ONNX Runtime on the CPU."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return session.run(None, {INPUT_NAME: inputs.detach().cpu().float().numpy()})[0]


def compare_with_pytorch(path: str, model: nn.Module, inputs: Tensor,
                         budget: int) -> Dict[str, float]:
    """Differences between the ONNX file's output and PyTorch's usual evaluation at ``budget``.

    PyTorch runs its ordinary solve (``eval_fixed_budget`` off, ``eval_max_iter = budget``),
    i.e. what ``tools/test.py`` measures at that budget.

    Args:
        path (str): The exported ``.onnx`` file.
        model (nn.Module): The exported model, in eval mode.
        inputs (Tensor): Normalized images ``(N, C, H, W)``.
        budget (int): The exported budget.

    Returns:
        dict: ``max_abs`` (largest absolute difference), ``max_rel`` (that over the largest
        absolute PyTorch logit), ``scale`` (that largest logit).
    """
    with fixed_budget(model, budget, enabled=False), torch.no_grad():
        expected = TensorOutput(model).eval()(inputs).float().cpu().numpy()
    got = run_onnx(path, inputs)
    if got.shape != expected.shape:
        raise ValueError(f'the ONNX output has shape {got.shape}, PyTorch gives '
                         f'{expected.shape}')
    max_abs = float(np.abs(got - expected).max())
    scale = float(np.abs(expected).max())
    return dict(max_abs=max_abs, max_rel=max_abs / max(scale, np.finfo(np.float32).tiny),
                scale=scale)



def measure_latency(path: str, model: nn.Module, inputs: Tensor, budget: int, rounds: int,
                    threads: int = 1) -> Dict[str, Dict[str, float]]:
    """Seconds per forward of the ONNX file in ONNX Runtime against PyTorch eager, interleaved.

    Each round times one forward of: ``onnxruntime`` (the file), ``pytorch_fixed``
    (``eval_fixed_budget``: the same ``budget`` evaluations of f as the file) and
    ``pytorch`` (the usual solve at ``eval_max_iter = budget``, which may stop early at its
    tolerance), all on the CPU with ``threads`` threads, after one untimed warm-up forward
    each. Ratios are taken within each round (see :mod:`mdeq_mm.analysis.timing`).

    Args:
        path (str): The exported ``.onnx`` file.
        model (nn.Module): The exported model, in eval mode, on the CPU.
        inputs (Tensor): Normalized images ``(N, C, H, W)``.
        budget (int): The exported budget.
        rounds (int): Timed rounds.
        threads (int): Intra-op threads of both runtimes. Defaults to 1.

    Returns:
        dict: ``seconds`` (median seconds per contender) and ``ratio`` (median, low, high of
        the per-round ``onnxruntime`` time over each PyTorch contender's).
    """
    import onnxruntime as ort

    from mdeq_mm.analysis.timing import RatioSummary, interleaved_times, time_call
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    feed = {INPUT_NAME: inputs.detach().cpu().float().numpy()}
    wrapper = TensorOutput(model).eval()

    def pytorch(fixed: bool):
        def run() -> float:
            with fixed_budget(model, budget, enabled=fixed), torch.no_grad():
                return time_call(lambda: wrapper(inputs))
        return run

    contenders = {'onnxruntime': lambda: time_call(lambda: session.run(None, feed)),
                  'pytorch_fixed': pytorch(True), 'pytorch': pytorch(False)}
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        interleaved_times(contenders, 1)
        times = interleaved_times(contenders, rounds)
    finally:
        torch.set_num_threads(saved_threads)
    ratio = {}
    for name in ('pytorch_fixed', 'pytorch'):
        summary = RatioSummary.of(times['onnxruntime'], times[name])
        ratio[name] = dict(median=summary.median, low=summary.low, high=summary.high)
    return dict(seconds={name: float(np.median(t)) for name, t in times.items()}, ratio=ratio)
