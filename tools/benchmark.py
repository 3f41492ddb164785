"""Benchmark MDEQ against HRNet and its solvers against TorchDEQ; write JSON, Markdown and PNGs.

Compared in one run, at the same input size and batch:

- MDEQ-small with the implicit gradient, with the phantom gradient, and unrolled for the same
  number of f-evaluations with ordinary backpropagation; mmseg's HRNet-W18-Small / W18 / W48
  FCN models from mmseg's own configs (and, for classification, mmpretrain's HRNet-W18):
  parameters, FLOPs, training-step peak memory and median time, inference time, solver steps
  and residuals;
- a sweep of MDEQ's peak memory and step time against the number of f-evaluations (implicit
  with the default Broyden memory, implicit with a fixed Broyden memory, unrolled);
- our Broyden / Anderson solvers against TorchDEQ 0.1.0's on the same f and z0: f-evaluations
  and wall time to a relative residual.

Every model configuration is measured in a fresh process (forked from a server that has only
imported the libraries), see ``tools/benchmark_memory.py`` for what is measured and how.

Examples:
    python tools/benchmark.py --out-dir work_dirs/benchmark
    python tools/benchmark.py --out-dir work_dirs/benchmark --size 256 512
    python tools/benchmark.py --quick --out-dir work_dirs/benchmark_quick
"""
import argparse
import datetime
import json
import multiprocessing
import os
import os.path as osp
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

import benchmark_memory  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MIB = benchmark_memory.MIB
MDEQ_SEG_CONFIG = 'configs/mdeq/fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py'
MDEQ_CLS_CONFIG = 'configs/mdeq/mdeq-small_4xb32_in1k.py'
QUICK_SEG_CONFIG = 'configs/mdeq/fcn_mdeq-tiny_1xb4-300_demo-cityscapes-64x128.py'
HRNET_SEG_CONFIGS = {
    'HRNet-W18-Small': 'mmseg::hrnet/fcn_hr18s_4xb2-80k_cityscapes-512x1024.py',
    'HRNet-W18': 'mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py',
    'HRNet-W48': 'mmseg::hrnet/fcn_hr48_4xb2-80k_cityscapes-512x1024.py',
}
HRNET_CLS_CONFIG = 'mmpretrain::hrnet/hrnet-w18_4xb32_in1k.py'
PHANTOM = dict(type='phantom', k=5, tau=0.6)
SOLVER_TOL = 1e-3
SOLVER_MEMORY_ANDERSON = 6
SOLVER_LAM = 1e-4
PRELOAD = ['__main__', 'torch', 'mmseg.models', 'mmpretrain.models', 'mdeq_mm', 'benchmark_memory']

# Published numbers (MDEQ_SPEC section 4) shown beside the measurements.
PUBLISHED_SEG = {
    'MDEQ-small': ('~8M', 'Cityscapes val mIoU 75.1 (~27 steps)'),
    'HRNet-W18-Small': ('3.9M', 'Cityscapes val mIoU 75.31 (FCN, 80k, mmseg)'),
    'HRNet-W18': ('9.6M', 'Cityscapes val mIoU 78.65 (FCN, 80k, mmseg)'),
    'HRNet-W48': ('65.9M', 'Cityscapes val mIoU 79.93 (FCN, 80k, mmseg)'),
}
PUBLISHED_CLS = {
    'MDEQ-small': ('18M', 'ImageNet top-1 75.4-75.5% (27 steps)'),
    'HRNet-W18': ('21.3M', 'ImageNet top-1 76.75% (mmpretrain)'),
}

# Goal thresholds of the issue.
GOAL_SIZE = (256, 512)
GOAL_IMPLICIT_VS_UNROLLED = 0.25
GOAL_FLAT = 1.05
GOAL_VS_HRNET_MEMORY = 1.0
GOAL_VS_HRNET_TIME = 3.0
GOAL_SOLVER_SPEEDUP = 1.3


@dataclass
class Settings:
    """What one run measures; ``full()`` and ``quick()`` are the two presets.

    The full preset uses 128x256 inputs, not the issue's 256x512 (``--size 256 512``), so that
    the whole run fits in about 15 minutes on a shared 2-core CPU, where one implicit training
    step of MDEQ-small at 256x512 takes over a minute. The sweep reuses the main comparison's
    runs at ``steps``; the fixed-memory Broyden series is run only at the larger budget of
    ``flat_pair`` (below ``ring_memory`` it is the default series).
    """

    seg_config: str
    size: Tuple[int, int]
    batch: int
    steps: int
    sweep: Tuple[int, ...]
    flat_pair: Tuple[int, int]
    ring_memory: int
    repeats: int
    sweep_repeats: int
    hrnets: Tuple[str, ...]
    cls_size: Optional[Tuple[int, int]]
    cls_repeats: int
    solver_target: float
    solver_max_iter: int
    solver_repeats: int
    contractive_dim: int
    threads: int
    device: str = 'cpu'
    solvers: bool = True
    label: str = 'MDEQ-small'
    notes: List[str] = field(default_factory=list)

    @classmethod
    def full(cls) -> 'Settings':
        return cls(seg_config=MDEQ_SEG_CONFIG, size=(128, 256), batch=2, steps=26,
                   sweep=(5, 10, 20, 40), flat_pair=(10, 40), ring_memory=10, repeats=2,
                   sweep_repeats=1, hrnets=tuple(HRNET_SEG_CONFIGS), cls_size=(224, 224),
                   cls_repeats=1, solver_target=0.4, solver_max_iter=40, solver_repeats=3,
                   contractive_dim=2048, threads=torch.get_num_threads())

    @classmethod
    def quick(cls) -> 'Settings':
        return cls(seg_config=QUICK_SEG_CONFIG, size=(64, 128), batch=2, steps=6,
                   sweep=(2, 4, 8), flat_pair=(4, 8), ring_memory=4, repeats=1,
                   sweep_repeats=1, hrnets=('HRNet-W18-Small', ), cls_size=None, cls_repeats=1,
                   solver_target=0.6, solver_max_iter=20, solver_repeats=1,
                   contractive_dim=256, threads=1, label='MDEQ-tiny (demo config)')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out-dir', required=True, help='folder for the JSON, Markdown, PNGs')
    parser.add_argument('--quick', action='store_true',
                        help='tiny MDEQ, 64x128 input, few steps (a smoke test, < 60 s)')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='segmentation input size (default 128 256; quick 64 128; the '
                        "issue's goals are stated at 256 512)")
    parser.add_argument('--batch', type=int, help='batch size (default 2)')
    parser.add_argument('--steps', type=int,
                        help='f-evaluations of the main comparison (default 26; quick 6)')
    parser.add_argument('--sweep', type=int, nargs='+',
                        help='f-evaluation budgets of the sweep (default 5 10 20 40)')
    parser.add_argument('--repeats', type=int,
                        help='timed training steps per model after the measured warm-up step '
                        '(default 2; the sweep uses --sweep-repeats)')
    parser.add_argument('--sweep-repeats', type=int, help='timed steps in the sweep (default 1)')
    parser.add_argument('--cls-repeats', type=int,
                        help='timed steps of the classification models (default 1)')
    parser.add_argument('--no-cls', action='store_true', help='skip the classification models')
    parser.add_argument('--no-solvers', action='store_true',
                        help='skip the comparison with TorchDEQ')
    parser.add_argument('--solver-target', type=float,
                        help='relative residual the solvers race to on the MDEQ f (default 0.4)')
    parser.add_argument('--threads', type=int, help='torch threads per process')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = Settings.quick() if args.quick else Settings.full()
    if args.size:
        s.size = tuple(args.size)
    for name in ('batch', 'steps', 'repeats', 'sweep_repeats', 'cls_repeats', 'solver_target',
                 'threads'):
        if getattr(args, name) is not None:
            setattr(s, name, getattr(args, name))
    if args.sweep:
        s.sweep = tuple(sorted(args.sweep))
        s.flat_pair = (s.sweep[1] if len(s.sweep) > 1 else s.sweep[0], s.sweep[-1])
    if args.no_cls:
        s.cls_size = None
    s.solvers = not args.no_solvers
    s.device = args.device
    return s


# ---------------------------------------------------------------- model configurations


def mdeq_backbone(kind: str, steps: int, memory: Optional[int] = None) -> Dict[str, Any]:
    """Backbone overrides for an MDEQ trained with ``kind`` gradients and ``steps`` f-evals."""
    if kind == 'unrolled':
        return dict(deq_mode='unrolled', unrolled_layers=steps)
    forward = dict(type='broyden', max_iter=steps, tol=SOLVER_TOL, stop_mode='rel')
    backward = dict(type='implicit', solver='broyden', max_iter=steps, tol=SOLVER_TOL)
    if memory is not None:
        forward['memory'] = backward['memory'] = memory
    if kind == 'phantom':
        backward = dict(PHANTOM)
    return dict(deq_mode='equilibrium', forward_solver=forward, backward=backward)


def build_specs(s: Settings) -> List[Dict[str, Any]]:
    """Every model configuration of the run, in the order they are measured."""
    common = dict(batch=s.batch, threads=s.threads, device=s.device, seed=0)
    seg = dict(common, size=s.size, task='seg')
    specs = []

    def add(key: str, label: str, config: str, base: Dict[str, Any], **kw) -> None:
        specs.append(dict(base, key=key, label=label, config=osp.join(REPO, config)
                          if '::' not in config else config, **kw))

    main = dict(repeats=s.repeats)
    add('seg/mdeq-implicit', f'{s.label}, implicit', s.seg_config, seg, **main,
        backbone=mdeq_backbone('implicit', s.steps), gradient='implicit', f_evals=s.steps,
        inference=True, flops=True)
    add('seg/mdeq-phantom', f'{s.label}, phantom (k=5, tau=0.6)', s.seg_config, seg, **main,
        backbone=mdeq_backbone('phantom', s.steps), gradient='phantom', f_evals=s.steps)
    add('seg/mdeq-unrolled', f'{s.label}, unrolled', s.seg_config, seg, **main,
        backbone=mdeq_backbone('unrolled', s.steps), gradient='unrolled', f_evals=s.steps)
    for name in s.hrnets:
        add(f'seg/{name}', name, HRNET_SEG_CONFIGS[name], seg, **main, gradient='backprop',
            inference=True, flops=True)

    sweep = dict(repeats=s.sweep_repeats)
    for n in s.sweep:
        if n != s.steps:
            add(f'sweep/implicit-{n}', f'implicit, {n} f-evals', s.seg_config, seg, **sweep,
                backbone=mdeq_backbone('implicit', n), gradient='implicit', f_evals=n)
            add(f'sweep/unrolled-{n}', f'unrolled, {n} f-evals', s.seg_config, seg, **sweep,
                backbone=mdeq_backbone('unrolled', n), gradient='unrolled', f_evals=n)
        if n > s.ring_memory and n == s.flat_pair[1]:
            add(f'sweep/implicit-ring-{n}', f'implicit, Broyden memory {s.ring_memory}, '
                f'{n} f-evals', s.seg_config, seg, **sweep,
                backbone=mdeq_backbone('implicit', n, s.ring_memory), gradient='implicit',
                f_evals=n)

    if s.cls_size is not None:
        cls = dict(common, size=s.cls_size, task='cls', repeats=s.cls_repeats)
        add('cls/mdeq-implicit', 'MDEQ-small, implicit', MDEQ_CLS_CONFIG, cls,
            backbone=mdeq_backbone('implicit', s.steps), gradient='implicit', f_evals=s.steps,
            inference=True, flops=True)
        add('cls/mdeq-phantom', 'MDEQ-small, phantom (k=5, tau=0.6)', MDEQ_CLS_CONFIG, cls,
            backbone=mdeq_backbone('phantom', s.steps), gradient='phantom', f_evals=s.steps)
        add('cls/HRNet-W18', 'HRNet-W18', HRNET_CLS_CONFIG, cls, gradient='backprop',
            inference=True, flops=True)
    return specs


def sweep_series(s: Settings, runs: Dict[str, dict]) -> Dict[str, Dict[int, dict]]:
    """The sweep's runs by series and f-evaluations, reusing the main and shared runs."""
    series: Dict[str, Dict[int, dict]] = {'implicit': {}, 'implicit_ring': {}, 'unrolled': {}}
    for n in s.sweep + (s.steps, ):
        implicit = runs.get('seg/mdeq-implicit' if n == s.steps else f'sweep/implicit-{n}')
        unrolled = runs.get('seg/mdeq-unrolled' if n == s.steps else f'sweep/unrolled-{n}')
        ring = runs.get(f'sweep/implicit-ring-{n}') if n > s.ring_memory else implicit
        for name, run in (('implicit', implicit), ('implicit_ring', ring),
                          ('unrolled', unrolled)):
            if run is not None and 'error' not in run:
                series[name][n] = run
    return {k: dict(sorted(v.items())) for k, v in series.items()}


# ---------------------------------------------------------------- solver comparison


class _CountedF:
    """Wraps a flat ``f``: counts calls and the seconds spent inside, optionally records the
    per-sample relative residual of every evaluated point."""

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], record: bool = False) -> None:
        self.f = f
        self.record = record
        self.calls = 0
        self.seconds = 0.0
        self.residuals: List[torch.Tensor] = []

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        fz = self.f(z)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        if self.record:
            flat_z, flat_fz = z.reshape(z.shape[0], -1), fz.reshape(fz.shape[0], -1)
            self.residuals.append(
                (flat_fz - flat_z).norm(dim=1) / (flat_fz.norm(dim=1) + 1e-9))
        return fz


def _mdeq_problem(spec: Dict[str, Any]) -> Tuple[Callable, torch.Tensor]:
    """The MDEQ layer at initialization as a flat map, and its z0 (zeros)."""
    from mdeq_mm.deq import StatePacker
    bm = benchmark_memory
    model = bm.build_model(bm.load_config(spec['config']), spec.get('backbone'))
    model.eval()
    mdeq = bm.find_mdeq(model)
    height, width = spec['size']
    images, _ = bm.generated_scenes(spec['batch'], height, width)
    with torch.no_grad():
        injection = mdeq.injection_of(bm.normalize(model, images))
    z0 = mdeq.initial_state(injection[0])
    mdeq.f.reset(z0)
    packer = StatePacker(z0)

    def f(z: torch.Tensor) -> torch.Tensor:
        return packer.pack(mdeq.f(packer.unpack(z), injection))

    return f, packer.pack(z0)


def _contractive_problem(dim: int, batch: int) -> Tuple[Callable, torch.Tensor]:
    """``f(z) = tanh(W z + x)`` with ``||W||_2 = 0.9``: a contraction with a unique fixed point."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(dim, dim, generator=gen)
    weight *= 0.9 / torch.linalg.matrix_norm(weight, ord=2)
    x = torch.randn(batch, dim, generator=gen)
    return (lambda z: torch.tanh(z @ weight.T + x)), torch.zeros(batch, dim)


def _solvers(max_iter: int) -> Dict[str, Callable]:
    """Each contender as ``run(f, z0, tol) -> worst relative residual of the returned iterate``."""
    from torchdeq.solver import anderson_solver, broyden_solver

    from mdeq_mm.deq import solve

    def ours(kind: str, **kw) -> Callable:
        def run(f, z0, tol):
            _, stats = solve(f, z0, solver=kind, max_iter=max_iter, tol=tol, stop_mode='rel',
                             check_every=1, **kw)
            return float(stats.rel_res.max())
        return run

    def theirs(solver: Callable, **kw) -> Callable:
        def run(f, z0, tol):
            _, _, info = solver(f, z0, max_iter=max_iter, tol=tol, stop_mode='rel', **kw)
            return float(info['rel_lowest'].max())
        return run

    return {
        'ours/broyden': ours('broyden'),
        'torchdeq/broyden': theirs(broyden_solver),
        'ours/anderson': ours('anderson', memory=SOLVER_MEMORY_ANDERSON, lam=SOLVER_LAM),
        'torchdeq/anderson': theirs(anderson_solver, m=SOLVER_MEMORY_ANDERSON, lam=SOLVER_LAM),
    }


def compare_solvers(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Race our solvers against TorchDEQ's on the same f and z0 (run in a fresh process).

    Per problem and solver: the best-so-far residual after every f-evaluation (full budget,
    for the plot), then ``repeats`` interleaved races to ``target``: f-evaluations, wall time
    (median) and the time outside f (solver overhead).
    """
    benchmark_memory.quiet_worker()
    torch.manual_seed(0)
    torch.set_num_threads(spec['threads'])
    problems = {
        'mdeq': (*_mdeq_problem(spec), spec['target']),
        'contractive': (*_contractive_problem(spec['contractive_dim'], 4),
                        spec['contractive_target']),
    }
    solvers = _solvers(spec['max_iter'])
    out: Dict[str, Any] = {}
    with torch.no_grad():
        for name, (f, z0, target) in problems.items():
            res: Dict[str, Any] = {'target': target, 'dim': z0.shape[1], 'batch': z0.shape[0]}
            for key, run in solvers.items():
                counted = _CountedF(f, record=True)
                run(counted, z0, 0.0)
                best = torch.stack(counted.residuals).cummin(dim=0).values
                res[key] = {'curve': best.mean(dim=1).tolist(),
                            'curve_worst': best.max(dim=1).values.tolist()}
            for _ in range(spec['repeats']):
                for key, run in solvers.items():
                    counted = _CountedF(f)
                    start = time.perf_counter()
                    final = run(counted, z0, target)
                    wall = time.perf_counter() - start
                    entry = res[key]
                    entry.setdefault('walls_s', []).append(wall)
                    entry.setdefault('overheads_s', []).append(wall - counted.seconds)
                    entry['nfe'] = counted.calls
                    entry['final_rel_res'] = final
                    entry['reached'] = final <= target
            for key in solvers:
                entry = res[key]
                entry['wall_s'] = statistics.median(entry['walls_s'])
                entry['overhead_s'] = statistics.median(entry['overheads_s'])
            for kind in ('broyden', 'anderson'):
                a, b = res[f'ours/{kind}'], res[f'torchdeq/{kind}']
                res[f'{kind}_ratios'] = {
                    'nfe_ours_over_torchdeq': a['nfe'] / b['nfe'],
                    'wall_torchdeq_over_ours': b['wall_s'] / a['wall_s'],
                    'overhead_torchdeq_over_ours': b['overhead_s'] / max(a['overhead_s'], 1e-9),
                }
            out[name] = res
    return out


# ---------------------------------------------------------------- running


def run_in_fresh_process(ctx, fn: Callable, spec: Dict[str, Any]) -> Dict[str, Any]:
    """``fn(spec)`` in a new process forked from the preloaded server; errors are recorded."""
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            return pool.submit(fn, spec).result()
    except Exception as err:  # a failed configuration must not end the run
        return dict(spec, error=f'{type(err).__name__}: {err}')


def machine_info(s: Settings) -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='ascii', errors='ignore') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if s.device.startswith('cuda') else None
    return dict(cpu=cpu, cpu_count=os.cpu_count(), gpu=gpu, torch=torch.__version__,
                python=platform.python_version(), threads=s.threads, device=s.device)


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def _goal(goal: str, value: Optional[float], op: str, threshold: Optional[float]) -> dict:
    """One goal row; ``op`` is '<=' or '>=' (or '' for a figure that is only reported)."""
    met = None
    if value is not None and op:
        met = value <= threshold if op == '<=' else value >= threshold
    return dict(goal=goal, value=value, target=f'{op} {threshold}' if op else '-', met=met)


def goals(s: Settings, runs: Dict[str, dict], solvers: Optional[dict]) -> List[dict]:
    """The issue's goals with the measured ratios."""
    def get(key: str, what: str) -> Optional[float]:
        run = runs.get(key)
        return None if run is None or 'error' in run else run.get(what)

    out = [
        _goal(f'implicit / unrolled training peak memory at {s.steps} f-evals',
              ratio(get('seg/mdeq-implicit', 'train_peak_bytes'),
                    get('seg/mdeq-unrolled', 'train_peak_bytes')),
              '<=', GOAL_IMPLICIT_VS_UNROLLED)
    ]
    series = sweep_series(s, runs)
    lo, hi = s.flat_pair
    for name, label in (('implicit', 'Broyden memory = budget'),
                        ('implicit_ring', f'Broyden memory {s.ring_memory}')):
        points = series[name]
        value = None
        if lo in points and hi in points:
            value = points[hi]['train_peak_bytes'] / points[lo]['train_peak_bytes']
        out.append(_goal(f'implicit peak memory at {hi} / at {lo} f-evals ({label})', value,
                         '<=', GOAL_FLAT))
    if 'HRNet-W18' in s.hrnets:
        hr_mem = get('seg/HRNet-W18', 'train_peak_bytes')
        hr_time = get('seg/HRNet-W18', 'step_time_s')
        out += [
            _goal('MDEQ implicit / HRNet-W18 training peak memory',
                  ratio(get('seg/mdeq-implicit', 'train_peak_bytes'), hr_mem), '<=',
                  GOAL_VS_HRNET_MEMORY),
            _goal('MDEQ phantom / HRNet-W18 training peak memory',
                  ratio(get('seg/mdeq-phantom', 'train_peak_bytes'), hr_mem), '', None),
            _goal('MDEQ phantom / HRNet-W18 training step time',
                  ratio(get('seg/mdeq-phantom', 'step_time_s'), hr_time), '<=',
                  GOAL_VS_HRNET_TIME),
            _goal('MDEQ implicit / HRNet-W18 training step time',
                  ratio(get('seg/mdeq-implicit', 'step_time_s'), hr_time), '', None),
        ]
    for problem, res in (solvers or {}).items():
        if 'error' in res:
            continue
        for kind in ('broyden', 'anderson'):
            a, b = res[f'ours/{kind}'], res[f'torchdeq/{kind}']
            row = _goal(f"{problem}: our {kind} f-evals <= TorchDEQ's (to rel. residual "
                        f"{res['target']:g})", None, '', None)
            row.update(value=f'{a["nfe"]}{"" if a["reached"] else " (not reached)"} vs '
                       f'{b["nfe"]}{"" if b["reached"] else " (not reached)"}',
                       target='ours <= theirs',
                       met=a['reached'] and (not b['reached'] or a['nfe'] <= b['nfe']))
            out.append(row)
            out.append(_goal(f'{problem}: TorchDEQ / our {kind} wall time',
                             res[f'{kind}_ratios']['wall_torchdeq_over_ours'], '>=',
                             GOAL_SOLVER_SPEEDUP))
    return out


# ---------------------------------------------------------------- reporting


def _mib(value: Optional[float]) -> str:
    return '-' if value is None else f'{value / MIB:.0f}'


def _num(value: Optional[float], fmt: str = '.2f') -> str:
    return '-' if value is None else format(value, fmt)


def _stat(run: dict, which: str, what: str, fmt: str) -> str:
    stats = run.get(which)
    return '-' if not stats else format(stats[what], fmt)


def model_table(runs: List[dict], published: Dict[str, Tuple[str, str]]) -> List[str]:
    lines = [
        '| model | gradient | params | GFLOPs / image | f-evals fwd / bwd | train peak MiB '
        '| step s | inference s | fwd rel. res. | bwd rel. res. | published |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for run in runs:
        if 'error' in run:
            lines.append(f'| {run["label"]} | {run["gradient"]} | failed: {run["error"]} '
                         '|||||||||')
            continue
        flops = run.get('flops')
        if run.get('flops_f') is not None:
            flops_text = (f'{flops / 1e9:.1f} = {run["flops_outside_f"] / 1e9:.2f} + '
                          f'{run["flops_steps"]:.0f} x {run["flops_f"] / 1e9:.2f}')
        else:
            flops_text = _num(flops and flops / 1e9, '.1f')
        fwd = _stat(run, 'forward', 'nfe', '.0f')
        bwd = _stat(run, 'backward', 'nfe', '.0f')
        if run['gradient'] == 'unrolled':
            fwd, bwd = f'{run["f_evals"]} (unrolled)', 'autograd'
        elif run['gradient'] == 'phantom':
            bwd = f'{PHANTOM["k"]} (phantom)'
        elif run['gradient'] == 'backprop':
            fwd = bwd = '-'
        pub = published.get(run['label'].split(',')[0])
        pub_text = f'{pub[0]} params; {pub[1]}' if pub else '-'
        lines.append(
            f'| {run["label"]} | {run["gradient"]} | {run["params"] / 1e6:.2f}M | {flops_text} '
            f'| {fwd} / {bwd} | {_mib(run["train_peak_bytes"])} | {run["step_time_s"]:.2f} '
            f'| {_num(run.get("infer_time_s"))} | {_stat(run, "forward", "rel_res", ".3f")} '
            f'| {_stat(run, "backward", "rel_res", ".3f")} | {pub_text} |')
    return lines


def sweep_table(s: Settings, series: Dict[str, Dict[int, dict]]) -> List[str]:
    lines = [
        f'| f-evals | implicit MiB | implicit, Broyden memory {s.ring_memory}, MiB '
        '| unrolled MiB | implicit step s | implicit (memory '
        f'{s.ring_memory}) step s | unrolled step s | implicit fwd rel. res. | '
        f'memory {s.ring_memory} fwd rel. res. |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for n in sorted({*s.sweep, s.steps}):
        cells = [series[k].get(n) for k in ('implicit', 'implicit_ring', 'unrolled')]
        mem = [_mib(c and c['train_peak_bytes']) for c in cells]
        tim = [_num(c and c['step_time_s']) for c in cells]
        res = [_stat(c, 'forward', 'rel_res', '.3f') if c else '-' for c in cells[:2]]
        lines.append(f'| {n} | ' + ' | '.join(mem + tim + res) + ' |')
    return lines


def solver_table(solvers: dict) -> List[str]:
    lines = []
    for problem, res in solvers.items():
        if 'error' in res:
            lines.append(f'{problem}: failed: {res["error"]}')
            continue
        lines += [
            '', f'**{problem}** (state {res["batch"]} x {res["dim"]}, target relative residual '
            f'{res["target"]:g})', '',
            '| solver | f-evals | reached | final worst rel. res. | wall s | outside f s |',
            '|---|---|---|---|---|---|',
        ]
        for key in ('ours/broyden', 'torchdeq/broyden', 'ours/anderson', 'torchdeq/anderson'):
            e = res[key]
            lines.append(f'| {key} | {e["nfe"]} | {"yes" if e["reached"] else "no"} '
                         f'| {e["final_rel_res"]:.3g} | {e["wall_s"]:.3f} '
                         f'| {e["overhead_s"]:.3f} |')
        for kind in ('broyden', 'anderson'):
            r = res[f'{kind}_ratios']
            lines.append(f'\n{kind}: f-evals ours / TorchDEQ = {r["nfe_ours_over_torchdeq"]:.2f}, '
                         f'wall time TorchDEQ / ours = {r["wall_torchdeq_over_ours"]:.2f}, '
                         f'time outside f TorchDEQ / ours = '
                         f'{r["overhead_torchdeq_over_ours"]:.2f}')
    return lines


def goals_table(goal_list: List[dict]) -> List[str]:
    lines = ['| goal | measured | target | met |', '|---|---|---|---|']
    for g in goal_list:
        value = g['value']
        text = value if isinstance(value, str) else _num(value, '.3f')
        met = {True: 'yes', False: '**no**', None: '-'}[g['met']]
        lines.append(f'| {g["goal"]} | {text} | {g["target"]} | {met} |')
    return lines


def write_markdown(path: str, report: Dict[str, Any], s: Settings) -> None:
    runs = report['runs']
    m = report['machine']
    h, w = s.size
    lines = [
        '# MDEQ benchmark', '',
        f'Machine: {m["cpu"]}, {m["cpu_count"]} cores, device {m["device"]}'
        f'{", " + m["gpu"] if m["gpu"] else ""}; torch {m["torch"]}, {m["threads"]} threads '
        f'per process. Date: {report["date"]}. Run time: {report["wall_time_s"]:.0f} s.', '',
        f'Command: `{report["command"]}`', '',
        f'Segmentation input {h}x{w}, batch {s.batch}; MDEQ forward/backward budgets of '
        f'{s.steps} f-evaluations (Broyden, tol {SOLVER_TOL}); the unrolled model applies f '
        f'{s.steps} times with ordinary backpropagation. Weights are randomly initialized and '
        'the inputs are generated street scenes (with their label maps for the loss).', '',
        f'Peak memory: {report["memory_method"]}. Step time: median of the timed training steps '
        '(forward, loss, backward, SGD step) after one warm-up step, which is the step whose '
        'memory is measured. Inference: median of eval-mode forwards after one warm-up. FLOPs: '
        "mmengine's `get_model_complexity_info` per image (one multiply-add = 1 FLOP); for MDEQ "
        'stem + head once plus the f-evaluations used in inference times f (the solver\'s own '
        'arithmetic is not counted). Each configuration ran in a fresh process, one after '
        'another, on a shared machine: compare ratios, not absolute times.', '',
    ]
    lines += [f'- {note}' for note in s.notes] + ([''] if s.notes else [])
    lines += ['## Goals', ''] + goals_table(report['goals']) + ['']
    lines += ['## Segmentation', '']
    lines += model_table([runs[k] for k in runs if k.startswith('seg/')], PUBLISHED_SEG)
    lines += ['', '## Memory and step time against f-evaluations', '']
    lines += sweep_table(s, sweep_series(s, runs))
    lines += ['', '![memory vs steps](memory_vs_steps.png)',
              '![step time vs steps](step_time_vs_steps.png)', '']
    cls_runs = [runs[k] for k in runs if k.startswith('cls/')]
    if cls_runs:
        ch, cw = s.cls_size
        lines += ['## Classification', '', f'Input {ch}x{cw}, batch {s.batch}.', '']
        lines += model_table(cls_runs, PUBLISHED_CLS) + ['']
    if report.get('solvers'):
        lines += ['## Solvers against TorchDEQ 0.1.0', '',
                  'Same f and z0 for every solver; f-evaluations counted by a wrapper around '
                  'f; both stop when every sample is below the target (ours checks every step, '
                  '`check_every=1`); Anderson with m=6 and ridge 1e-4 in both (ours relative to '
                  "the residuals' scale, TorchDEQ's absolute). Wall time: median of "
                  f'{s.solver_repeats} interleaved races. The MDEQ f is MDEQ at initialization '
                  '(eval mode), which has no accurate fixed point (MDEQ_SPEC section 5), so the '
                  'race is to a relative residual the solvers can reach; the contractive map is '
                  'tanh(Wz + x) with spectral norm 0.9.']
        lines += solver_table(report['solvers'])
        lines += ['', '![solver comparison](solver_comparison.png)', '']
    lines += ['![models](models.png)', '']
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines))


def plot_sweep(path_memory: str, path_time: str, s: Settings,
               series: Dict[str, Dict[int, dict]], runs: Dict[str, dict]) -> None:
    labels = {'implicit': 'implicit (Broyden memory = budget)',
              'implicit_ring': f'implicit (Broyden memory {s.ring_memory})',
              'unrolled': 'unrolled (backprop through every f)'}
    for path, what, scale, ylabel in ((path_memory, 'train_peak_bytes', MIB,
                                       'training peak memory (MiB)'),
                                      (path_time, 'step_time_s', 1.0, 'training step (s)')):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, points in series.items():
            if points:
                ax.plot(list(points), [r[what] / scale for r in points.values()], 'o-',
                        label=labels[name])
        hr = runs.get('seg/HRNet-W18')
        if hr and 'error' not in hr:
            ax.axhline(hr[what] / scale, color='gray', ls='--', label='HRNet-W18')
        ax.set_xlabel('f-evaluations (forward budget = backward budget = unrolled layers)')
        ax.set_ylabel(ylabel)
        ax.set_title(f'{s.label}, {s.size[0]}x{s.size[1]}, batch {s.batch}')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def plot_models(path: str, runs: Dict[str, dict]) -> None:
    rows = [r for k, r in runs.items() if not k.startswith('sweep/') and 'error' not in r]
    names = [f'{r["task"]}: {r["label"]}' for r in rows]
    panels = (('params', 1e6, 'parameters (M)'), ('train_peak_bytes', MIB, 'train peak (MiB)'),
              ('step_time_s', 1.0, 'training step (s)'))
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 0.45 * len(rows) + 1.5), sharey=True)
    for ax, (key, scale, title) in zip(axes, panels):
        ax.barh(range(len(rows)), [r[key] / scale for r in rows],
                color=['C0' if 'MDEQ' in n else 'C1' for n in names])
        ax.set_title(title)
        ax.grid(axis='x', alpha=0.3)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(names, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_solvers(path: str, solvers: dict) -> None:
    problems = [p for p, r in solvers.items() if 'error' not in r]
    fig, axes = plt.subplots(1, max(len(problems), 1), figsize=(6 * max(len(problems), 1), 4))
    axes = [axes] if len(problems) <= 1 else axes
    for ax, problem in zip(axes, problems):
        res = solvers[problem]
        for key in ('ours/broyden', 'torchdeq/broyden', 'ours/anderson', 'torchdeq/anderson'):
            curve = res[key]['curve']
            ax.semilogy(range(1, len(curve) + 1), curve, '-' if key.startswith('ours') else '--',
                        color='C0' if 'broyden' in key else 'C1', label=key)
        ax.axhline(res['target'], color='gray', ls=':', label='target')
        ax.set_xlabel('f-evaluations')
        ax.set_ylabel('best relative residual (batch mean)')
        ax.set_title(problem)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    s = settings_from_args(args)
    os.makedirs(args.out_dir, exist_ok=True)
    logger = MMLogger.get_instance(
        'mdeq_benchmark', log_file=osp.join(args.out_dir, 'benchmark.log'))
    if not args.quick and tuple(s.size) != GOAL_SIZE:
        s.notes.append(
            f'Input {s.size[0]}x{s.size[1]}, not the {GOAL_SIZE[0]}x{GOAL_SIZE[1]} at which the '
            'issue states its goals, so that the run fits in about 15 minutes on this machine; '
            f'`--size {GOAL_SIZE[0]} {GOAL_SIZE[1]}` measures there.')
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload(PRELOAD)
    start = time.perf_counter()

    runs: Dict[str, dict] = {}
    specs = build_specs(s)
    for i, spec in enumerate(specs, 1):
        logger.info(f'[{i}/{len(specs)}] {spec["task"]} {spec["label"]} ...')
        tic = time.perf_counter()
        run = run_in_fresh_process(ctx, benchmark_memory.measure_config, spec)
        runs[spec['key']] = run
        if 'error' in run:
            logger.warning(f'    failed: {run["error"]}')
        else:
            logger.info(f'    peak {run["train_peak_bytes"] / MIB:.0f} MiB, step '
                        f'{run["step_time_s"]:.2f} s ({time.perf_counter() - tic:.0f} s)')

    solvers = None
    if s.solvers:
        logger.info('solvers against TorchDEQ ...')
        spec = dict(config=osp.join(REPO, s.seg_config), size=s.size, batch=s.batch,
                    backbone=mdeq_backbone('implicit', s.steps), threads=s.threads,
                    target=s.solver_target, max_iter=s.solver_max_iter,
                    repeats=s.solver_repeats, contractive_dim=s.contractive_dim,
                    contractive_target=1e-5)
        solvers = run_in_fresh_process(ctx, compare_solvers, spec)
        if 'error' in solvers:
            logger.warning(f'    failed: {solvers["error"]}')
            solvers = {'mdeq': solvers}

    report = dict(
        date=datetime.datetime.now().strftime('%Y-%m-%d %H:%M'),
        command='python tools/benchmark.py ' + ' '.join(
            argv if argv is not None else sys.argv[1:]),
        machine=machine_info(s), settings=asdict(s),
        memory_method=('torch.cuda.max_memory_allocated' if s.device.startswith('cuda') else
                       'live tensor storage bytes on CPU (peak during the step of the bytes '
                       'of tensors created in it, plus parameters, buffers and inputs; see '
                       'tools/benchmark_memory.py); the resident-set growth of the step is in '
                       'the JSON as rss_delta_bytes for comparison'),
        runs=runs, solvers=solvers)
    report['goals'] = goals(s, runs, solvers)
    report['wall_time_s'] = time.perf_counter() - start
    with open(osp.join(args.out_dir, 'results.json'), 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=1, default=str)
    write_markdown(osp.join(args.out_dir, 'results.md'), report, s)
    plot_sweep(osp.join(args.out_dir, 'memory_vs_steps.png'),
               osp.join(args.out_dir, 'step_time_vs_steps.png'), s, sweep_series(s, runs), runs)
    plot_models(osp.join(args.out_dir, 'models.png'), runs)
    if solvers:
        plot_solvers(osp.join(args.out_dir, 'solver_comparison.png'), solvers)
    for g in report['goals']:
        logger.info(f'goal: {g["goal"]}: {g["value"]} (target {g["target"]}, met {g["met"]})')
    logger.info(f'wrote {args.out_dir}/results.json, results.md and PNGs in '
                f'{report["wall_time_s"]:.0f} s')
    return report


if __name__ == '__main__':
    main()
