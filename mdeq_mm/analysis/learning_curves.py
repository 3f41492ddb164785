"""Learning curves on real data: does a model learn, and as fast as a plain baseline?

Each contender is a config trained by mmengine's Runner exactly as ``tools/train.py`` does, in
a fresh process (so no registry, scope or message-hub state leaks between contenders), with the
same data, schedule and seed. Its curves are read back from the run's ``vis_data/scalars.json``
(mmengine's ``LocalVisBackend``): the training loss every logging interval, the validation
metric every ``val_interval``, and the DEQ solver statistics that the MDEQ backbone logs.
"""
import glob
import json
import math
import multiprocessing
import os
import os.path as osp
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Dict, List, Optional, Sequence

# Solver statistics worth plotting, as the MDEQ backbone logs them (training windows, with
# 'train/' in front in the scalar records), and those of the validation solves ('val/' in front).
SOLVER_KEYS = ('deq_fwd_steps', 'deq_fwd_rel_res', 'deq_bwd_steps', 'deq_bwd_rel_res')
VAL_SOLVER_KEYS = ('deq_fwd_steps', 'deq_fwd_rel_res')


@dataclass
class Contender:
    """One model to train: a config plus ``--cfg-options``-style overrides.

    Args:
        name (str): Label in reports and plots.
        config (str): Config file path.
        cfg_options (dict): Overrides merged into the config (dotted keys allowed).
    """

    name: str
    config: str
    cfg_options: Dict = field(default_factory=dict)


@dataclass
class LearningCurve:
    """What one training run learned, iteration by iteration.

    Args:
        name (str): The contender's name.
        metric_name (str): The validation metric (e.g. ``accuracy/top1``, ``mIoU``).
        train_iters (list[int]): Iterations at which the loss was logged.
        loss (list[float]): Training loss (window mean) at ``train_iters``.
        val_iters (list[int]): Iterations after which the model was validated (0: the
            initial weights, before training).
        metric (list[float]): Validation metric at ``val_iters``.
        solver (dict[str, list[float]]): DEQ solver statistics at ``train_iters`` (absent keys
            for iterations without a solve, e.g. during the unrolled warm-up, are NaN).
        val_solver (dict[str, list[float]]): The validation solves' statistics
            (``deq_fwd_steps``, ``deq_fwd_rel_res``) at ``val_iters``; empty for models
            without a DEQ.
        sec_per_iter (float): Median training-iteration time (indicative only on a shared
            machine).
        train_seconds (list[float]): Training time (validation excluded) up to each of
            ``val_iters``, summed from the logged windows' mean iteration times.
        load (list[float]): The machine's 1-minute load average when the run started and
            ended: times are comparable between runs only at similar loads.
    """

    name: str
    metric_name: str
    train_iters: List[int] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    val_iters: List[int] = field(default_factory=list)
    metric: List[float] = field(default_factory=list)
    solver: Dict[str, List[float]] = field(default_factory=dict)
    val_solver: Dict[str, List[float]] = field(default_factory=dict)
    sec_per_iter: float = float('nan')
    train_seconds: List[float] = field(default_factory=list)
    load: List[float] = field(default_factory=list)

    def first_iter_reaching(self, value: float) -> Optional[int]:
        """The first validated iteration whose metric is at least ``value``, else None."""
        return next((it for it, m in zip(self.val_iters, self.metric) if m >= value), None)

    def max_loss_rise(self) -> float:
        """The largest relative rise of the training loss between consecutive logging
        windows (0.1: one window's mean loss was 10% above the previous one's; 0 if it never
        rose), e.g. the jump at the switch from unrolled to equilibrium training."""
        rises = [b / a - 1.0 for a, b in zip(self.loss, self.loss[1:]) if a > 0]
        return max([0.0, *rises])

    def metric_at_seconds(self, seconds: float) -> float:
        """The validation metric after ``seconds`` of training, linear between validations
        (the validation grid is an artifact of the schedule, not of the model), the final
        metric after the run ended; NaN before the first validation."""
        points = list(zip(self.train_seconds, self.metric))
        for (t0, m0), (t1, m1) in zip(points, points[1:]):
            if t0 <= seconds <= t1:
                return m0 + (m1 - m0) * (seconds - t0) / (t1 - t0) if t1 > t0 else m1
        if points and seconds >= points[-1][0]:
            return points[-1][1]
        return float('nan')

    def to_dict(self) -> dict:
        return asdict(self)


def mean_curve(curves: Sequence[LearningCurve]) -> LearningCurve:
    """The mean of runs of one contender (e.g. several seeds): metric, loss, training time
    and solver statistics averaged point by point; ``load`` is the range over the runs.

    Args:
        curves (Sequence[LearningCurve]): Runs with the same logging and validation
            iterations.

    Returns:
        LearningCurve: Named like the first run.
    """
    first = curves[0]
    for curve in curves[1:]:
        if curve.val_iters != first.val_iters or curve.train_iters != first.train_iters:
            raise ValueError(f'{curve.name}: runs logged or validated at different iterations '
                             f'({first.val_iters} vs {curve.val_iters}); cannot average them')

    def mean(lists: Sequence[Sequence[float]]) -> List[float]:
        return [sum(values) / len(values) for values in zip(*lists)]

    return LearningCurve(
        name=first.name, metric_name=first.metric_name, train_iters=list(first.train_iters),
        loss=mean([c.loss for c in curves]), val_iters=list(first.val_iters),
        metric=mean([c.metric for c in curves]),
        solver=_mean_stats([c.solver for c in curves], mean),
        val_solver=_mean_stats([c.val_solver for c in curves], mean),
        sec_per_iter=median(c.sec_per_iter for c in curves),
        train_seconds=mean([c.train_seconds for c in curves]),
        load=[min(min(c.load) for c in curves), max(max(c.load) for c in curves)]
        if all(c.load for c in curves) else [])


def _mean_stats(stats: Sequence[Dict[str, List[float]]], mean) -> Dict[str, List[float]]:
    """The point-by-point ``mean`` of the statistics that every run has."""
    return {k: mean([s[k] for s in stats]) for k in stats[0] if all(k in s for s in stats)}


def read_scalars(work_dir: str) -> List[dict]:
    """All records of the newest run's ``vis_data/scalars.json`` under ``work_dir``."""
    paths = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not paths:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir!r}: did the run '
                                'log anything (LoggerHook, LocalVisBackend)?')
    with open(paths[-1], encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def curve_from_scalars(name: str, records: Sequence[dict], metric_name: str) -> LearningCurve:
    """Split mmengine's scalar records into training and validation curves.

    Training records carry ``loss``; validation records carry ``metric_name`` and the
    iteration they followed as ``step``.
    """
    curve = LearningCurve(name=name, metric_name=metric_name)
    curve.solver = {key: [] for key in SOLVER_KEYS}
    curve.val_solver = {key: [] for key in VAL_SOLVER_KEYS}
    times = []
    elapsed, elapsed_at = 0.0, {0: 0.0}
    for record in records:
        if 'loss' in record:
            iteration = int(record['iter'])
            previous = curve.train_iters[-1] if curve.train_iters else 0
            curve.train_iters.append(iteration)
            curve.loss.append(float(record['loss']))
            times.append(float(record['time']))
            elapsed += times[-1] * (iteration - previous)
            elapsed_at[iteration] = elapsed
            for key in SOLVER_KEYS:
                curve.solver[key].append(float(record.get(f'train/{key}', float('nan'))))
        elif metric_name in record:
            curve.val_iters.append(int(record['step']))
            curve.metric.append(float(record[metric_name]))
            for key in VAL_SOLVER_KEYS:
                curve.val_solver[key].append(float(record.get(f'val/{key}', float('nan'))))
    if not curve.val_iters:
        raise ValueError(f'{name}: no validation record with {metric_name!r}; logged keys: '
                         f'{sorted({k for r in records for k in r})}')
    if any(b <= a for a, b in zip(curve.val_iters, curve.val_iters[1:])) or (
            curve.train_iters and curve.val_iters[-1] < curve.train_iters[0]):
        raise ValueError(f'{name}: validation records are not at increasing iterations '
                         f'({curve.val_iters}); with an iteration-based loop set '
                         "LoggerHook's log_metric_by_epoch=False")
    curve.solver = {k: v for k, v in curve.solver.items() if not all(map(math.isnan, v))}
    curve.val_solver = {k: v for k, v in curve.val_solver.items()
                        if not all(map(math.isnan, v))}
    curve.sec_per_iter = median(times) if times else float('nan')
    curve.train_seconds = [elapsed_at[max(k for k in elapsed_at if k <= it)]
                           for it in curve.val_iters]
    return curve


def _train(config: str, work_dir: str, cfg_options: dict, threads: int,
           validate_at_start: bool) -> None:
    """Child process: build the runner as ``tools/train.py`` does and train."""
    import torch

    import mdeq_mm  # noqa: F401  (registers the MDEQ components)
    from mdeq_mm.engine.launch import build_runner, load_tool_config
    torch.set_num_threads(threads)
    cfg = load_tool_config(config, cfg_options, work_dir=work_dir)
    if validate_at_start:
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='ValidateBeforeTrainHook')]
    build_runner(cfg).train()


def train_contender(contender: Contender,
                    work_dir: str,
                    metric_name: str,
                    threads: int = 1,
                    validate_at_start: bool = True) -> LearningCurve:
    """Train ``contender`` in a fresh process and return its learning curve.

    Args:
        contender (Contender): Config and overrides.
        work_dir (str): The run's work dir (logs, checkpoints, scalars).
        metric_name (str): Validation metric to read, e.g. ``'accuracy/top1'``.
        threads (int): torch intra-op threads of the run. Defaults to 1.
        validate_at_start (bool): Also validate the initial weights (iteration 0, 0 s of
            training; :class:`~mdeq_mm.engine.hooks.ValidateBeforeTrainHook`, which leaves
            the training run unchanged). Defaults to True.

    Returns:
        LearningCurve: The run's curves.
    """
    process = multiprocessing.get_context('spawn').Process(
        target=_train,
        args=(contender.config, work_dir, contender.cfg_options, threads, validate_at_start))
    load = [os.getloadavg()[0]]
    process.start()
    process.join()
    load.append(os.getloadavg()[0])
    if process.exitcode != 0:
        raise RuntimeError(f'training {contender.name!r} ({contender.config}) failed with exit '
                           f'code {process.exitcode}; its log is under {work_dir}')
    curve = curve_from_scalars(contender.name, read_scalars(work_dir), metric_name)
    curve.load = load
    return curve


def plot_learning_curves(curves: Sequence[LearningCurve], path: str, title: str) -> None:
    """Loss and validation metric per iteration, the metric per second of training and (for
    DEQs) the forward relative residual, as PNG."""
    from .report import new_figure, save_figure
    with_solver = any('deq_fwd_rel_res' in c.solver for c in curves)
    panels = 4 if with_solver else 3
    fig, axes = new_figure(panels, (5 * panels, 4))
    for curve in curves:
        axes[0].plot(curve.train_iters, curve.loss, label=curve.name)
        axes[1].plot(curve.val_iters, curve.metric, marker='o', label=curve.name)
        axes[2].plot(curve.train_seconds, curve.metric, marker='o', label=curve.name)
        if with_solver and 'deq_fwd_rel_res' in curve.solver:
            axes[3].semilogy(curve.train_iters, curve.solver['deq_fwd_rel_res'], label=curve.name)
    axes[0].set(xlabel='iteration', ylabel='training loss', title='loss')
    axes[1].set(xlabel='iteration', ylabel=curves[0].metric_name, title='validation')
    axes[2].set(xlabel='training time (s, validation excluded)', ylabel=curves[0].metric_name,
                title='validation per second of training')
    if with_solver:
        axes[3].set(xlabel='iteration', ylabel='relative residual',
                    title='forward solve (equilibrium iterations)')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path, title, dpi=100)
