"""The benchmark as one function: MDEQ at initialization and at a trained state, against HRNet.

:func:`run_benchmark` trains (or loads) the trained state, then measures, each part in fresh
processes: training steps of MDEQ-small (implicit at both states, phantom, the recommended
recipe) and HRNet-W18 in interleaved rounds at every thread count; peak memory against
f-evaluations (implicit and unrolled); the evaluation forward from a learned start against the
cold start; a 26-step forward solve with our solvers and TorchDEQ's on the same f and z0; and
f itself (eager, ``channels_last``, optionally ``torch.compile``; convolution GFLOP/s). The
results are judged by :func:`mdeq_mm.analysis.goals.judge`.
"""
import dataclasses
import datetime
import multiprocessing
import os
import os.path as osp
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from mmengine.logging import MMLogger

from .data import generated_scenes, to_inputs
from .f_speed import f_conv_efficiency, f_variants
from .goals import GoalThresholds, judge
from .models import build_model, find_mdeq, load_config, mdeq_budgets
from .solvers import race
from .starts import start_speed
from .steps import interleaved_steps, recipe_spec
from .timing import RatioSummary
from .training import train_checkpoint

PRELOAD = ['torch', 'mmseg.models', 'mmpretrain.models', 'mdeq_mm.analysis']
PHANTOM = dict(k=5, tau=0.6)


@dataclass
class BenchmarkSettings:
    """What one benchmark run measures.

    Attributes:
        seg_config (str): The MDEQ segmentation config measured (its budgets are used for
            the step times).
        train_config (str): The config whose short training run gives the trained state.
        hrnet_config (str): The HRNet segmentation config compared with.
        hrnet (str): Its name in the report.
        recipe_config (str, optional): A config whose training recipe (backward, forward
            budget, fixed-point correction; :func:`~mdeq_mm.analysis.steps.recipe_spec`)
            is timed on ``seg_config``'s model beside the implicit step.
        initializer_config (str, optional): ``train_config``'s model with a learned
            initializer and the schedule that trains it (``InitializerTrainingHook``): it is
            trained from the trained state, then the evaluation forward from its start is
            timed against the cold start (:func:`~mdeq_mm.analysis.starts.start_speed`).
        initializer_iters (int, optional): Its training iterations instead of the config's.
        mdeq (str): The MDEQ's name in the report. Defaults to 'MDEQ-small'.
        size (tuple[int, int]): Input height and width.
        batch (int): Batch size.
        threads (tuple[int]): Torch thread counts; each gets its own step, solver and f runs.
        rounds (int): Interleaved rounds of timed training steps.
        memory_f_evals (int): f-evaluations of the implicit / unrolled memory comparison.
        sweep (tuple[int]): Further f-evaluation budgets of the memory sweep.
        solver_steps (int): Steps of the forward solver race.
        solver_rounds (int): Interleaved rounds of the race.
        f_rounds (int): Interleaved rounds of the f variants.
        compile_f (bool): Also measure ``torch.compile`` of f (minutes of compile time).
        train_iters (int, optional): Training iterations instead of the train config's.
        thresholds (GoalThresholds): The goals' bounds.
    """

    seg_config: str
    train_config: str
    hrnet_config: str
    hrnet: str
    recipe_config: Optional[str] = None
    initializer_config: Optional[str] = None
    initializer_iters: Optional[int] = None
    mdeq: str = 'MDEQ-small'
    size: Tuple[int, int] = (128, 256)
    batch: int = 2
    threads: Tuple[int, ...] = (1, 2)
    rounds: int = 3
    memory_f_evals: int = 26
    sweep: Tuple[int, ...] = (10, 40)
    solver_steps: int = 26
    solver_rounds: int = 3
    f_rounds: int = 5
    compile_f: bool = False
    train_iters: Optional[int] = None
    thresholds: GoalThresholds = field(default_factory=GoalThresholds)


def _problem_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Solver race and f measurements at ``spec['threads']`` (run in a fresh process)."""
    torch.manual_seed(0)
    torch.set_num_threads(spec['threads'])
    model = build_model(load_config(spec['config']), checkpoint=spec['checkpoint']).eval()
    mdeq = find_mdeq(model)
    x = to_inputs(model, generated_scenes(spec['batch'], *spec['size'])[0])
    with torch.no_grad():
        f, z0 = mdeq.fixed_point_problem(x).flat()
        solvers = race(f, z0, spec['solver_steps'], spec['solver_rounds'])
    variants = f_variants(mdeq, x, spec['f_rounds'], spec['compile_f'])
    return dict(solvers=solvers, f=dict(variants=variants, conv=f_conv_efficiency(mdeq, x)))


def _in_fresh_process(ctx, fn: Callable, *args) -> Any:
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def _machine() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='ascii', errors='ignore') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return dict(cpu=cpu, cpu_count=os.cpu_count(), torch=torch.__version__,
                python=platform.python_version())


def run_benchmark(s: BenchmarkSettings,
                  out_dir: str,
                  checkpoint: Optional[str] = None,
                  command: str = '') -> Dict[str, Any]:
    """Run every measurement and return the results (see :func:`write_report`).

    Args:
        s (BenchmarkSettings): What to measure.
        out_dir (str): Folder for the training run (when ``checkpoint`` is None) and logs.
        checkpoint (str, optional): Weights of the trained state to load instead of training.
        command (str): The command line, recorded in the results.

    Returns:
        dict: Settings, machine, per-part results and the judged ``goals``.
    """
    logger = MMLogger.get_instance('mdeq_benchmark',
                                   log_file=osp.join(out_dir, 'benchmark.log'))
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload(PRELOAD)
    start = time.perf_counter()
    if checkpoint is None:
        logger.info(f'training the trained state: {s.train_config} ...')
        checkpoint = _in_fresh_process(ctx, train_checkpoint, s.train_config,
                                       osp.join(out_dir, 'trained_state'), s.threads[-1],
                                       s.train_iters)
        trained = (f'{osp.basename(s.train_config)} trained here in '
                   f'{time.perf_counter() - start:.0f} s')
    else:
        trained = f'loaded from {checkpoint}'
    common = dict(size=tuple(s.size), batch=s.batch, config=s.seg_config)

    steps, step_ratios = {}, {}
    for threads in s.threads:
        logger.info(f'training steps, {threads} thread(s) ...')
        specs = {
            f'{s.mdeq} implicit, trained': dict(common, checkpoint=checkpoint, flops=True),
            f'{s.mdeq} implicit, init': dict(common),
            f'{s.mdeq} phantom, trained': dict(
                common, checkpoint=checkpoint,
                backbone=dict(backward=dict(type='phantom', **PHANTOM))),
            s.hrnet: dict(common, config=s.hrnet_config, flops=True),
        }
        if s.recipe_config:
            specs[f'{s.mdeq} recommended, trained'] = dict(
                common, checkpoint=checkpoint, **recipe_spec(s.recipe_config))
        runs = interleaved_steps(ctx, {k: dict(v, threads=threads) for k, v in specs.items()},
                                 s.rounds)
        hrnet_times = runs[s.hrnet].get('step_times_s')
        ratios = {}
        for key, name in ((f'{s.mdeq} implicit, trained', 'implicit_over_hrnet'),
                          (f'{s.mdeq} implicit, init', 'implicit_init_over_hrnet'),
                          (f'{s.mdeq} phantom, trained', 'phantom_over_hrnet'),
                          (f'{s.mdeq} recommended, trained', 'recipe_over_hrnet')):
            if hrnet_times and runs.get(key, {}).get('step_times_s'):
                ratios[name] = dataclasses.asdict(
                    RatioSummary.of(runs[key]['step_times_s'], hrnet_times))
        steps[str(threads)], step_ratios[str(threads)] = runs, ratios

    logger.info('peak memory against f-evaluations ...')
    memory_specs = {
        f'{kind}-{n}': dict(common, checkpoint=checkpoint, threads=s.threads[0],
                            backbone=mdeq_budgets(kind, n))
        for n in sorted({s.memory_f_evals, *s.sweep}) for kind in ('implicit', 'unrolled')
    }
    memory = interleaved_steps(ctx, memory_specs, 1)

    starts = {}
    if s.initializer_config:
        logger.info(f'training the learned initializer: {s.initializer_config} ...')
        init_checkpoint = _in_fresh_process(
            ctx, train_checkpoint, s.initializer_config, osp.join(out_dir, 'initializer'),
            s.threads[-1], s.initializer_iters, checkpoint)
        for threads in s.threads:
            logger.info(f'evaluation forward, cold and learned start, {threads} thread(s) ...')
            starts[str(threads)] = _in_fresh_process(
                ctx, start_speed, dict(common, config=s.initializer_config,
                                       checkpoint=init_checkpoint, threads=threads,
                                       rounds=s.rounds))

    solvers, f_results = {}, {}
    for threads in s.threads:
        logger.info(f'solver race and f variants, {threads} thread(s) ...')
        spec = dict(common, checkpoint=checkpoint, threads=threads,
                    solver_steps=s.solver_steps, solver_rounds=s.solver_rounds,
                    f_rounds=s.f_rounds, compile_f=s.compile_f)
        out = _in_fresh_process(ctx, _problem_worker, spec)
        solvers[str(threads)], f_results[str(threads)] = out['solvers'], out['f']

    results = dict(
        date=datetime.datetime.now().strftime('%Y-%m-%d %H:%M'), command=command,
        machine=_machine(), settings=dataclasses.asdict(s), trained=trained,
        checkpoint=checkpoint, mdeq=s.mdeq, hrnet=s.hrnet, steps=steps, step_ratios=step_ratios,
        memory=memory, memory_f_evals=s.memory_f_evals, starts=starts, solvers=solvers,
        f=f_results)
    results['goals'] = [g.to_dict() for g in judge(results, s.thresholds)]
    results['wall_time_s'] = time.perf_counter() - start
    for g in results['goals']:
        logger.info(f'goal: {g["name"]}: {g["value"]} ({g["op"]} {g["threshold"]:.3g}, '
                    f'met: {g["met"]})')
    return results
