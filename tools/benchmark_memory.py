"""Measurement core of ``tools/benchmark.py`` (also used by ``tools/analyze_solver.py``).

:func:`measure_config` measures one model configuration and is meant to run in a fresh process:
it builds a segmentor or classifier from an mmseg / mmpretrain config, feeds it a fixed batch
of generated street scenes and records parameters, FLOPs, the peak memory and median time of a
training step, the inference time and the MDEQ solver statistics.

Peak memory. On CUDA it is ``torch.cuda.max_memory_allocated`` over one training step. The CPU
allocator keeps no statistics, and the resident set size mixes in library pages and memory the
C allocator holds back, so on CPU :class:`LiveTensorBytes` counts the bytes of every tensor
storage created during the step and subtracts them when the storage is freed; the peak of that
count plus the bytes of the parameters, buffers and inputs that exist before the step is the CPU
equivalent of ``max_memory_allocated`` (tensor memory only: allocator slack and library
workspaces are not included). The resident-set growth of the same step is recorded as a cross-check.
"""
import logging
import statistics
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

MIB = 2**20
SCENE_SEED = 0


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes held by tensor storages created while the mode is active.

    Every operator output whose storage is new (not a view of, or in-place on, an input) is
    counted once and uncounted when the storage is freed. Storages that existed before entering
    the mode are not counted, so free them first (e.g. ``zero_grad(set_to_none=True)``).

    Args:
        device_type (str): Count storages on this device type only. Defaults to 'cpu'.

    Example:
        >>> with LiveTensorBytes() as tracker:
        ...     x = torch.ones(1024)
        ...     del x
        >>> tracker.peak, tracker.live
        (4096, 0)
    """

    def __init__(self, device_type: str = 'cpu') -> None:
        super().__init__()
        self.device_type = device_type
        self.live = 0
        self.peak = 0
        self._counted = WeakIdKeyDictionary()

    def _release(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {_storage_ptr(t) for t in tree_flatten((args, kwargs))[0]}
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if (not isinstance(t, Tensor) or t.device.type != self.device_type
                    or _storage_ptr(t) is None):
                continue
            storage = t.untyped_storage()
            nbytes = storage.nbytes()
            if nbytes == 0 or storage.data_ptr() in inputs or storage in self._counted:
                continue
            self._counted[storage] = nbytes
            weakref.finalize(storage, self._release, nbytes)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        return out


def _storage_ptr(t: Any) -> Optional[int]:
    """Address of a tensor's storage; None for non-tensors and storage-less (e.g. mkldnn)."""
    if not isinstance(t, Tensor) or t.layout != torch.strided:
        return None
    return t.untyped_storage().data_ptr()


def tensor_bytes(tensors: Sequence[Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def _proc_status_kib(field: str) -> Optional[int]:
    """A ``kB`` field of ``/proc/self/status`` (Linux), or None."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not possible."""
    try:
        with open('/proc/self/clear_refs', 'w', encoding='ascii') as f:
            f.write('5')
        return True
    except OSError:
        return False


def load_config(path: str):
    """An mmengine Config from a file or an ``mmseg::`` / ``mmpretrain::`` name."""
    from mmengine.config import Config
    if '::' in path:
        from mmengine.hub import get_config
        return get_config(path)
    return Config.fromfile(path)


def without_sync_bn(node: Any) -> Any:
    """A copy of a config node with every SyncBN norm replaced by BN (SyncBN needs GPUs)."""
    if isinstance(node, dict):
        out = {k: without_sync_bn(v) for k, v in node.items()}
        if out.get('type') == 'SyncBN':
            out['type'] = 'BN'
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(without_sync_bn(v) for v in node)
    return node


def build_model(cfg, backbone: Optional[Dict[str, Any]] = None) -> nn.Module:
    """Build ``cfg.model`` for a CPU-only or single-GPU run, randomly initialized.

    SyncBN becomes BN, ``pretrained`` and the backbone's ``init_cfg`` are dropped (no
    downloads), and the keys of ``backbone`` replace the backbone's settings.
    """
    import mdeq_mm  # noqa: F401  (registers MDEQ components)
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, init_default_scope

    model_cfg = without_sync_bn(cfg.model.to_dict())
    model_cfg.pop('pretrained', None)
    model_cfg['backbone'].pop('init_cfg', None)
    model_cfg['backbone'].update(backbone or {})
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(model_cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter at INFO
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def find_mdeq(model: nn.Module):
    """The model's MDEQ backbone, or None."""
    from mdeq_mm.models import MDEQ
    backbone = getattr(model, 'backbone', None)
    return backbone if isinstance(backbone, MDEQ) else None


def task_of(model: nn.Module) -> str:
    """'seg' for an mmseg segmentor, 'cls' for an mmpretrain classifier."""
    return 'seg' if hasattr(model, 'decode_head') else 'cls'


def generated_scenes(num: int, height: int, width: int,
                     seed: int = SCENE_SEED) -> Tuple[np.ndarray, np.ndarray]:
    """``num`` generated street scenes: RGB images (N, H, W, 3) and train-id labels (N, H, W)."""
    from mdeq_mm.datasets import render_street_scene
    rng = np.random.default_rng(seed)
    scenes = [render_street_scene(rng, height, width) for _ in range(num)]
    return np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])


def normalize(model: nn.Module, images: np.ndarray) -> Tensor:
    """RGB uint8 images (N, H, W, 3) as the float (N, 3, H, W) input of ``model``, normalized
    with the mean and std of its data preprocessor (configured for RGB)."""
    pre = model.data_preprocessor
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    if getattr(pre, '_enable_normalize', False):
        x = (x - pre.mean.view(1, -1, 1, 1)) / pre.std.view(1, -1, 1, 1)
    return x.contiguous()


def make_batch(model: nn.Module, batch: int, height: int, width: int,
               seed: int = SCENE_SEED) -> Tuple[Tensor, List[Any]]:
    """A training batch of generated scenes: inputs and data samples with labels.

    Segmentation uses the scenes' label maps; classification gets fixed pseudo-random labels.
    """
    images, labels = generated_scenes(batch, height, width, seed)
    inputs = normalize(model, images)
    if task_of(model) == 'seg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for label in labels:
            sample = SegDataSample(metainfo=dict(img_shape=(height, width),
                                                 ori_shape=(height, width)))
            sample.gt_sem_seg = PixelData(data=torch.from_numpy(label).long()[None])
            samples.append(sample)
        return inputs, samples
    from mmpretrain.structures import DataSample
    num_classes = model.head.num_classes
    targets = np.random.default_rng(seed).integers(0, num_classes, batch)
    return inputs, [DataSample().set_gt_label(int(t)) for t in targets]


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor,
                  samples: List[Any]) -> float:
    """Forward, loss, backward and optimizer step; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss, _ = model.parse_losses(model.loss(inputs, samples))
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def solver_stats(mdeq, which: str) -> Optional[Dict[str, float]]:
    """Batch means of the backbone's latest forward or backward solver statistics."""
    if mdeq is None:
        return None
    stats = mdeq.last_forward_stats if which == 'forward' else mdeq.last_backward_stats
    if stats is None:
        return None
    out = stats.to_dict()
    return {k: out[k] for k in ('steps', 'nfe', 'rel_res', 'abs_res', 'converged')}


def wall_times(fn: Callable[[], Any], repeats: int, device: torch.device) -> List[float]:
    """Wall times of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


class _FlatF(nn.Module):
    """The MDEQ layer ``f(z; x)`` at a fixed injection, taking the branch states as arguments."""

    def __init__(self, mdeq, injection: Sequence[Optional[Tensor]]) -> None:
        super().__init__()
        self.mdeq = mdeq
        self.injection = injection

    def forward(self, *z: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.mdeq.f(z, self.injection))


class _Injection(nn.Module):
    """The MDEQ stem and input injection (computed once per image)."""

    def __init__(self, mdeq) -> None:
        super().__init__()
        self.mdeq = mdeq

    def forward(self, x: Tensor) -> Tensor:
        return self.mdeq.injection_of(x)[0]


class _Head(nn.Module):
    """Everything after the backbone: the decode head, or neck and classification head."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *feats: Tensor) -> Tensor:
        if task_of(self.model) == 'seg':
            return self.model.decode_head(feats)
        out = self.model.neck(feats) if self.model.with_neck else feats
        return self.model.head(out)


class _TensorForward(nn.Module):
    """``model(x, mode='tensor')``: the network output without post-processing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor):
        return self.model(x, mode='tensor')


def count_flops(model: nn.Module, x: Tensor) -> Dict[str, float]:
    """FLOPs per image by mmengine's ``get_model_complexity_info`` (one multiply-add = 1 FLOP).

    For an MDEQ the layer ``f`` is counted once (at ``z = 0`` and the image's injection), and the
    stem with injection and the head once; the total is ``outside_f + steps * f`` and is filled
    in by the caller, who knows the steps. Other models are counted whole.
    """
    from mmengine.analysis import get_model_complexity_info

    def flops(module: nn.Module, inputs: Tuple[Tensor, ...]) -> float:
        info = get_model_complexity_info(module, inputs=inputs, show_table=False,
                                         show_arch=False)
        return float(info['flops'])

    x = x[:1]
    mdeq = find_mdeq(model)
    with torch.no_grad():
        if mdeq is None:
            return {'flops': flops(_TensorForward(model), (x, ))}
        injection = mdeq.injection_of(x)
        z0 = mdeq.initial_state(injection[0])
        mdeq.f.reset(z0)
        f_flops = flops(_FlatF(mdeq, injection), tuple(z0))
        outside = flops(_Injection(mdeq), (x, )) + flops(_Head(model), tuple(z0))
    return {'flops_f': f_flops, 'flops_outside_f': outside}


def quiet_worker() -> None:
    """Keep a worker's output to errors: no per-parameter init log, no analyzer warnings."""
    import warnings

    from mmengine.logging import MMLogger
    warnings.simplefilter('ignore')
    MMLogger.get_instance('mdeq_benchmark_worker', log_level=logging.ERROR)


def measure_config(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Measure one configuration; run it in a fresh process.

    Args:
        spec (dict): ``config`` (path or ``mmseg::``/``mmpretrain::`` name), ``backbone``
            (overrides), ``size`` (H, W), ``batch``, ``repeats`` (timed training steps after
            one measured warm-up step), ``inference`` (bool, also time inference), ``flops``
            (bool), ``threads``, ``device``, ``seed``; other keys are passed through.

    Returns:
        dict: ``spec`` plus the measurements (bytes, seconds, FLOPs per image, solver stats).
    """
    quiet_worker()
    torch.manual_seed(spec.get('seed', 0))
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    device = torch.device(spec.get('device', 'cpu'))
    height, width = spec['size']
    model = build_model(load_config(spec['config']), spec.get('backbone')).to(device)
    mdeq = find_mdeq(model)
    inputs, samples = make_batch(model, spec['batch'], height, width)
    inputs = inputs.to(device)
    samples = [s.to(device) for s in samples]
    params = sum(p.numel() for p in model.parameters())
    static = tensor_bytes([*model.parameters(), *model.buffers(), inputs])
    # lr 0: every timed step sees the same weights, so the solver work does not drift.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    model.train()

    result = dict(spec, params=params, static_bytes=static, torch_threads=torch.get_num_threads())
    rss_before = _proc_status_kib('VmRSS')
    rss_reset = _reset_rss_peak()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        training_step(model, optimizer, inputs, samples)
        _sync(device)
        result['train_peak_bytes'] = torch.cuda.max_memory_allocated(device)
        result['memory_method'] = 'torch.cuda.max_memory_allocated'
    else:
        optimizer.zero_grad(set_to_none=True)
        with LiveTensorBytes() as tracker:
            training_step(model, optimizer, inputs, samples)
        result['train_peak_bytes'] = static + tracker.peak
        result['memory_method'] = 'live tensor bytes (LiveTensorBytes)'
    rss_peak = _proc_status_kib('VmHWM')
    if rss_reset and rss_before is not None and rss_peak is not None:
        result['rss_delta_bytes'] = max(rss_peak - rss_before, 0) * 1024
    result['warmup_forward'] = solver_stats(mdeq, 'forward')

    times = wall_times(lambda: training_step(model, optimizer, inputs, samples),
                       spec.get('repeats', 1), device)
    result['step_times_s'] = times
    result['step_time_s'] = statistics.median(times)
    result['forward'] = solver_stats(mdeq, 'forward')
    result['backward'] = solver_stats(mdeq, 'backward')

    model.eval()
    if spec.get('inference'):
        with torch.no_grad():
            infer_times = wall_times(lambda: model(inputs, mode='tensor'),
                                     spec.get('repeats', 1) + 1, device)
        result['infer_times_s'] = infer_times[1:]
        result['infer_time_s'] = statistics.median(infer_times[1:])
        result['eval_forward'] = solver_stats(mdeq, 'forward')
    if spec.get('flops'):
        result.update(count_flops(model, inputs))
        if mdeq is not None:
            steps = (result.get('eval_forward') or {}).get('nfe') or \
                mdeq.deq.forward_cfg.max_iter
            result['flops_steps'] = steps
            result['flops'] = result['flops_outside_f'] + steps * result['flops_f']
    return result

