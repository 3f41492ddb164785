"""Solver diagnostics of an MDEQ model: residual curves and anytime inference."""
import copy
import dataclasses
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import MMLogger
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mdeq_mm.deq import BackwardConfig, solve

from .models import cold_start, find_mdeq

Curve = Dict[str, List[List[float]]]
METRIC_KEYS = ('mIoU', 'accuracy/top1')


def forward_curves(model: nn.Module, x: Tensor, solvers: Sequence[str],
                   max_iter: int) -> Dict[str, Curve]:
    """Per solver, the relative and absolute residual of every iterate (steps x images),
    whole budget, no early stop."""
    with torch.no_grad():
        f, z0 = find_mdeq(model).fixed_point_problem(x).flat()
        curves = {}
        for name in solvers:
            _, stats = solve(f, z0, solver=name, max_iter=max_iter, tol=0.0, stop_mode='rel')
            curves[name] = {'rel': stats.rel_trace.tolist(), 'abs': stats.abs_trace.tolist()}
    return curves


def backward_curve(model: nn.Module, x: Tensor, samples: List[Any],
                   max_iter: int) -> Tuple[str, Curve]:
    """Residuals of the implicit backward solve of one training step at the equilibrium.

    The forward and backward solves get ``max_iter`` steps and no early stop; BatchNorm stays in
    eval mode (running statistics), dropout is active as in training. A model with the phantom
    gradient is analyzed with an implicit Broyden backward.
    """
    mdeq = find_mdeq(model)
    deq = mdeq.deq
    solver = deq.backward_cfg.solver.type if deq.backward_cfg.type == 'implicit' else 'broyden'
    saved = deq.forward_cfg, deq.backward_cfg, mdeq.deq_mode
    deq.forward_cfg = dataclasses.replace(deq.forward_cfg, max_iter=max_iter, tol=0.0)
    deq.backward_cfg = BackwardConfig.from_dict(
        dict(type='implicit', solver=solver, max_iter=max_iter, tol=0.0, on_fail='accept'))
    mdeq.deq_mode = 'equilibrium'
    model.train()
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.eval()
    try:
        loss, _ = model.parse_losses(model.loss(x, samples))
        loss.backward()
        stats = mdeq.last_backward_stats
    finally:
        deq.forward_cfg, deq.backward_cfg, mdeq.deq_mode = saved
        model.eval()
        model.zero_grad(set_to_none=True)
    return solver, {'rel': stats.rel_trace.tolist(), 'abs': stats.abs_trace.tolist()}


def anytime_inference(cfg, checkpoint: str, budgets: Sequence[int], metric: Optional[str],
                      work_dir: str, logger: MMLogger) -> Dict[str, Any]:
    """The test metric for each evaluation budget, one Runner test pass per budget.

    Args:
        cfg (Config): A config with a test dataloader and evaluator.
        checkpoint (str): The weights to test.
        budgets (Sequence[int]): Forward solver budgets (the backbone's ``eval_max_iter``).
        metric (str, optional): The metric to report; default mIoU or accuracy/top1.
        work_dir (str): The Runner's work_dir.
        logger (MMLogger): Where to log each budget's result.

    Returns:
        dict: ``checkpoint`` and ``rows``, one per budget: the metric, all metrics, the mean
        solver steps and final relative residual, and the seconds of the pass. For a backbone
        with a learned initializer the rows start from it, and ``cold_rows`` are the same
        passes started from zeros.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    # The budget is set here, so a DEQEvalBudgetHook in the config must not override it.
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                        if h.get('type') != 'DEQEvalBudgetHook']
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    mdeq = find_mdeq(model)
    if mdeq is None:
        raise ValueError(f'the model of {cfg.filename} has no MDEQ backbone')
    seen: List[Tuple[float, float]] = []
    handle = mdeq.register_forward_hook(
        lambda *_: seen.append((mdeq.last_forward_stats.steps.float().mean().item(),
                                mdeq.last_forward_stats.rel_res.float().mean().item())))
    starts = ['learned', 'cold'] if mdeq.initializer is not None else ['cold']
    result: Dict[str, Any] = dict(checkpoint=checkpoint)
    try:
        for name in starts:
            rows = []
            for budget in budgets:
                mdeq.eval_max_iter = budget
                seen.clear()
                start = time.perf_counter()
                if name == 'cold':
                    with cold_start(mdeq):
                        metrics = runner.test()
                else:
                    metrics = runner.test()
                seconds = time.perf_counter() - start
                key = metric or next((k for k in METRIC_KEYS if k in metrics),
                                     next(iter(metrics)))
                rows.append(dict(budget=budget, metric=key, value=float(metrics[key]),
                                 metrics={k: float(v) for k, v in metrics.items()},
                                 mean_steps=float(np.mean([s for s, _ in seen])),
                                 mean_rel_res=float(np.mean([r for _, r in seen])),
                                 seconds=seconds))
                logger.info(f'{name} start, budget {budget}: {key} {metrics[key]:.2f}, mean '
                            f'steps {rows[-1]["mean_steps"]:.2f}, mean rel. residual '
                            f'{rows[-1]["mean_rel_res"]:.4f} ({seconds:.1f} s)')
            result['rows' if name == starts[0] else 'cold_rows'] = rows
    finally:
        handle.remove()
    return result
