"""Training steps of whole models, each model in its own fresh process, stepped in rounds.

:class:`StepWorker` builds one model configuration in a new process, measures a first
training step (its peak memory, solver statistics and, if asked, FLOPs) and then times one
training step whenever asked. :func:`interleaved_steps` keeps the workers of the models being
compared alive together and steps them in turn (A B A B ...), so that their per-round ratios
see the same machine load (see :mod:`mdeq_mm.analysis.timing`).
"""
import logging
import statistics
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from mdeq_mm.models.losses import fixed_point_correction_losses
from .data import generated_scenes, make_batch
from .flops import count_flops
from .memory import peak_tensor_bytes, rss_peak_delta, tensor_bytes
from .models import build_model, find_mdeq, load_config
from .timing import interleaved_times, time_call

STAT_KEYS = ('steps', 'nfe', 'rel_res', 'abs_res', 'converged')


def recipe_spec(config: str) -> Dict[str, Any]:
    """The training recipe of an MDEQ config as step-spec entries.

    ``backbone``: the config backbone's ``backward``, ``forward_solver`` and
    ``eval_max_iter``; ``fixed_point_correction``: the arguments of its
    ``FixedPointCorrectionHook``, if it has one (the hook's work is what a timed step adds;
    every timed step is corrected, whatever the hook's ``prob``). A ``JacobianRegHook`` is not
    part of the timed step: it regularizes a fraction of the iterations, whose cost shows in
    the learning benchmark's time per iteration.

    Args:
        config (str): Config path.

    Returns:
        dict: ``backbone`` and, if any, ``fixed_point_correction``.
    """
    cfg = load_config(config)
    backbone = cfg.model.backbone
    spec: Dict[str, Any] = dict(backbone={
        k: backbone[k] for k in ('backward', 'forward_solver', 'eval_max_iter') if k in backbone})
    for hook in cfg.get('custom_hooks', []):
        if hook['type'] in ('FixedPointCorrectionHook', 'mdeq_mm.FixedPointCorrectionHook'):
            spec['fixed_point_correction'] = {k: v for k, v in hook.items() if k != 'type'}
    return spec


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor,
                  samples: List[Any], correction_weights: Sequence[float] = ()) -> float:
    """Forward, loss, backward and optimizer step; returns the loss.

    With ``correction_weights`` the loss also has the fixed-point correction terms of the
    states the MDEQ backbone sampled (see :class:`FixedPointCorrectionHook`).
    """
    optimizer.zero_grad(set_to_none=True)
    losses = model.loss(inputs, samples)
    if correction_weights:
        losses.update(fixed_point_correction_losses(model, find_mdeq(model).last_trajectory,
                                                    samples, correction_weights))
    loss, _ = model.parse_losses(losses)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def solver_stats(model: nn.Module) -> Dict[str, Optional[Dict[str, float]]]:
    """Batch means of the MDEQ backbone's latest forward and backward solver statistics."""
    mdeq = find_mdeq(model)
    out: Dict[str, Optional[Dict[str, float]]] = {'forward': None, 'backward': None}
    if mdeq is None:
        return out
    for which, stats in (('forward', mdeq.last_forward_stats),
                         ('backward', mdeq.last_backward_stats)):
        if stats is not None:
            values = stats.to_dict()
            out[which] = {k: values[k] for k in STAT_KEYS}
    if out['backward'] is not None:
        # the linear solve's VJPs plus those of its fallback
        out['backward']['vjps'] = float(mdeq.deq.last_backward_vjps)
    return out


def _mean_stats(history: List[Dict[str, Optional[dict]]]) -> Dict[str, Optional[dict]]:
    """Per-key means of :func:`solver_stats` over steps."""
    out: Dict[str, Optional[dict]] = {}
    for which in ('forward', 'backward'):
        rows = [h[which] for h in history if h[which] is not None]
        out[which] = ({k: statistics.fmean(float(r[k]) for r in rows) for k in rows[0]}
                      if rows else None)
    return out


def _quiet() -> None:
    """Keep a worker's output to errors: no per-parameter init log, no analyzer warnings."""
    from mmengine.logging import MMLogger
    warnings.simplefilter('ignore')
    MMLogger.get_instance('mdeq_analysis_worker', log_level=logging.ERROR)


def _first_step(spec: Dict[str, Any]):
    """Build the spec's model and batch, run the measured first training step."""
    _quiet()
    torch.manual_seed(spec.get('seed', 0))
    torch.set_num_threads(spec['threads'])
    device = torch.device(spec.get('device', 'cpu'))
    height, width = spec['size']
    model = build_model(load_config(spec['config']), spec.get('backbone'),
                        spec.get('checkpoint')).to(device)
    inputs, samples = make_batch(model, *generated_scenes(spec['batch'], height, width))
    inputs, samples = inputs.to(device), [s.to(device) for s in samples]
    # lr 0: every step sees the same weights, so the solver work does not drift.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    weights = _use_fixed_point_correction(model, spec.get('fixed_point_correction'))
    model.train()
    optimizer.zero_grad(set_to_none=True)
    static = tensor_bytes([*model.parameters(), *model.buffers(), inputs])
    with rss_peak_delta() as rss, peak_tensor_bytes(device) as peak:
        first_s = time_call(lambda: training_step(model, optimizer, inputs, samples, weights))
    result = dict(params=sum(p.numel() for p in model.parameters()), static_bytes=static,
                  train_peak_bytes=peak['peak'] + (static if device.type != 'cuda' else 0),
                  rss_delta_bytes=rss['bytes'], first_step_s=first_s,
                  first_step=solver_stats(model), torch_threads=torch.get_num_threads())
    if spec.get('flops'):
        model.eval()
        result.update(count_flops(model, inputs))
        model.train()
    return model, optimizer, inputs, samples, weights, result


def _use_fixed_point_correction(model: nn.Module,
                                hook_args: Optional[Dict[str, Any]]) -> List[float]:
    """Make the MDEQ sample its solve as ``FixedPointCorrectionHook(**hook_args)`` does; the
    states' loss weights (none without ``hook_args``)."""
    if not hook_args:
        return []
    from mdeq_mm.engine.hooks import FixedPointCorrectionHook
    hook = FixedPointCorrectionHook(**hook_args)
    find_mdeq(model).deq.trajectory_cfg = hook.trajectory_cfg
    return hook.weights


def _serve(conn, spec: Dict[str, Any]) -> None:
    """Worker process: first step, then one timed step per 'step' request until 'close'."""
    try:
        model, optimizer, inputs, samples, weights, result = _first_step(spec)
    except Exception as err:  # reported to the parent, which records the failed model
        conn.send({'error': f'{type(err).__name__}: {err}'})
        return
    conn.send(result)
    history = []
    device = inputs.device
    while conn.recv() == 'step':
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        seconds = time_call(lambda: training_step(model, optimizer, inputs, samples, weights))
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        history.append(solver_stats(model))
        conn.send(seconds)
    conn.send(_mean_stats(history))


class StepWorker:
    """One model configuration in a fresh process, stepped on request.

    Args:
        ctx: A multiprocessing context (e.g. ``'forkserver'`` with the libraries preloaded).
        spec (dict): ``config`` (path or ``mmseg::``/``mmpretrain::`` name), ``size`` (H, W),
            ``batch``, ``threads``; optional ``backbone`` (overrides), ``checkpoint``,
            ``device``, ``seed``, ``flops`` (bool), ``fixed_point_correction`` (the
            arguments of a ``FixedPointCorrectionHook``; see :func:`recipe_spec`).

    Attributes:
        result (dict): The first step's measurements, or ``{'error': ...}``.
    """

    def __init__(self, ctx, spec: Dict[str, Any]) -> None:
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, spec), daemon=True)
        self._process.start()
        child.close()
        self.result: Dict[str, Any] = self._conn.recv()

    @property
    def ok(self) -> bool:
        """Whether the model was built and its first step ran."""
        return 'error' not in self.result

    def step(self) -> float:
        """Seconds of one training step."""
        self._conn.send('step')
        return self._conn.recv()

    def close(self) -> Dict[str, Optional[dict]]:
        """End the process; returns the mean solver statistics of the timed steps."""
        stats: Dict[str, Optional[dict]] = {}
        if self.ok and self._process.is_alive():
            self._conn.send('close')
            stats = self._conn.recv()
        self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.terminate()
        return stats


def interleaved_steps(ctx, specs: Mapping[str, Dict[str, Any]],
                      rounds: int) -> Dict[str, Dict[str, Any]]:
    """Measure every spec's first step, then time ``rounds`` rounds of one step each.

    The workers start one after another (each first step runs alone), then every round steps
    each model once, in the order of ``specs``.

    Returns:
        dict: Per key, the spec plus its :attr:`StepWorker.result`, and for the models that
        ran, ``step_times_s`` (one per round), ``step_time_s`` (their median) and ``forward``
        / ``backward`` (mean solver statistics of the timed steps).
    """
    workers: Dict[str, StepWorker] = {}
    results: Dict[str, Dict[str, Any]] = {}
    try:
        for key, spec in specs.items():
            workers[key] = StepWorker(ctx, spec)
            results[key] = dict(spec, **workers[key].result)
        running = {k: w for k, w in workers.items() if w.ok}
        times = interleaved_times({k: w.step for k, w in running.items()}, rounds)
        for key, worker in running.items():
            results[key].update(worker.close(), step_times_s=times[key],
                                step_time_s=statistics.median(times[key]))
    finally:
        for worker in workers.values():
            worker.close()
    return results
