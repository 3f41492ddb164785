"""Solver races on one fixed-point problem: our solvers against TorchDEQ 0.1.0's.

Every contender solves the same flat map from the same start for a fixed number of steps (no
early stop), so the work inside f is the same and the time outside f is the solver's own
overhead: its bookkeeping (history updates, small linear solves, residual tracking).
TorchDEQ is optional: without it only our solvers run.
"""
import dataclasses
import importlib.util
import statistics
import time
from typing import Callable, Dict, List

import torch
from torch import Tensor

from mdeq_mm.deq import solve

from .timing import RatioSummary, interleaved_times

ANDERSON = dict(memory=6, lam=1e-4)
FlatFn = Callable[[Tensor], Tensor]
Solver = Callable[[FlatFn, Tensor, int], object]


class CountedF:
    """A flat ``f`` that counts its calls and the seconds spent inside them.

    Args:
        f (Callable): The map on ``(B, D)`` tensors.
        record (bool): Also record the per-sample relative residual of every evaluated
            point (costs time outside f). Defaults to False.
    """

    def __init__(self, f: FlatFn, record: bool = False) -> None:
        self.f = f
        self.record = record
        self.calls = 0
        self.seconds = 0.0
        self.residuals: List[Tensor] = []

    def __call__(self, z: Tensor) -> Tensor:
        start = time.perf_counter()
        fz = self.f(z)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        if self.record:
            self.residuals.append((fz - z).flatten(1).norm(dim=1) /
                                  (fz.flatten(1).norm(dim=1) + 1e-9))
        return fz


def torchdeq_available() -> bool:
    """Whether TorchDEQ is installed."""
    return importlib.util.find_spec('torchdeq') is not None


def contenders() -> Dict[str, Solver]:
    """Each solver as ``run(f, z0, steps)``: ours, and TorchDEQ's when it is installed."""

    def ours(kind: str, **kw) -> Solver:
        return lambda f, z0, steps: solve(f, z0, solver=kind, max_iter=steps, tol=0.0,
                                          stop_mode='rel', **kw)

    out = {'ours/broyden': ours('broyden'), 'ours/anderson': ours('anderson', **ANDERSON)}
    if torchdeq_available():
        from torchdeq.solver import anderson_solver, broyden_solver

        def theirs(solver: Callable, **kw) -> Solver:
            return lambda f, z0, steps: solver(f, z0, max_iter=steps, tol=0.0,
                                               stop_mode='rel', **kw)

        out['torchdeq/broyden'] = theirs(broyden_solver)
        out['torchdeq/anderson'] = theirs(anderson_solver, m=ANDERSON['memory'],
                                          lam=ANDERSON['lam'])
    return out


def race(f: FlatFn, z0: Tensor, steps: int, rounds: int) -> Dict[str, dict]:
    """Race the :func:`contenders` on ``f`` from ``z0`` for ``steps`` steps each.

    First one untimed pass per solver records the best-so-far relative residual after every
    f-evaluation (for plots); then ``rounds`` interleaved rounds time each solver.

    Returns:
        dict: Per solver ``nfe``, ``curve`` (batch-mean best relative residual per
        f-evaluation), ``wall_s`` / ``in_f_s`` / ``overhead_s`` (per round),
        ``overhead_fraction`` (median of per-round time outside f / wall time); and per solver
        kind with both contenders, ``'<kind>/overhead_ours_over_torchdeq'``: a
        :class:`RatioSummary` of the per-round overhead ratios, as a dict.
    """
    runs = contenders()
    out: Dict[str, dict] = {}
    with torch.no_grad():
        for name, run in runs.items():
            counted = CountedF(f, record=True)
            run(counted, z0, steps)
            best = torch.stack(counted.residuals).cummin(dim=0).values
            out[name] = dict(nfe=counted.calls, curve=best.mean(dim=1).tolist(), wall_s=[],
                             in_f_s=[], overhead_s=[])

        def timed(name: str) -> Callable[[], float]:
            def once() -> float:
                counted = CountedF(f)
                start = time.perf_counter()
                runs[name](counted, z0, steps)
                wall = time.perf_counter() - start
                entry = out[name]
                entry['wall_s'].append(wall)
                entry['in_f_s'].append(counted.seconds)
                entry['overhead_s'].append(wall - counted.seconds)
                return wall
            return once

        interleaved_times({name: timed(name) for name in runs}, rounds)
    for entry in out.values():
        fractions = [o / w for o, w in zip(entry['overhead_s'], entry['wall_s'])]
        entry['overhead_fraction'] = statistics.median(fractions)
    for kind in ('broyden', 'anderson'):
        ours, theirs = out[f'ours/{kind}'], out.get(f'torchdeq/{kind}')
        if theirs is not None:
            out[f'{kind}/overhead_ours_over_torchdeq'] = dataclasses.asdict(
                RatioSummary.of(ours['overhead_s'], theirs['overhead_s']))
    return out
