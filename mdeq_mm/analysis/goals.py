"""Goals: measured figures judged against named thresholds.

The thresholds are options of the benchmark (``GoalThresholds``), chosen as targets for this
project; the benchmark reports each goal as met or not met and never changes a figure to
meet one.
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

OPS = ('<=', '>=')


@dataclass(frozen=True)
class GoalThresholds:
    """The thresholds the benchmark judges its measurements against.

    Attributes:
        step_time_vs_hrnet (float): MDEQ-small training step with the implicit gradient over
            HRNet-W18's, same input, batch and threads, at most. Defaults to 2.0.
        implicit_vs_unrolled_memory (float): Implicit over unrolled training peak memory at
            the same number of f-evaluations, at most. Defaults to 0.25.
        flat_memory (float): Implicit training peak memory at the largest over the smallest
            f-evaluation budget of the sweep, at most. Defaults to 1.05.
        solver_overhead (float): Time outside f over the wall time of a forward solve, at
            most. Defaults to 0.10.
        overhead_vs_torchdeq (float): Our solver's time outside f over TorchDEQ's on the same
            f and start, at most. Defaults to 1/3.
        f_variant_speedup (float): Eager time of f over a variant's (channels_last,
            compiled) from which the variant is worth adopting. Defaults to 1.2.
        recipe_step_vs_hrnet (float): MDEQ-small training step with the recommended recipe
            over HRNet-W18's, at most. Defaults to 1.0.
        learned_start_steps (float): Forward solver steps to the tolerance from the learned
            start over those from the cold start, at most. Defaults to 0.5.
    """

    step_time_vs_hrnet: float = 2.0
    implicit_vs_unrolled_memory: float = 0.25
    flat_memory: float = 1.05
    solver_overhead: float = 0.10
    overhead_vs_torchdeq: float = 1 / 3
    f_variant_speedup: float = 1.2
    recipe_step_vs_hrnet: float = 1.0
    learned_start_steps: float = 0.5


@dataclass(frozen=True)
class Goal:
    """One judged figure: ``value op threshold``.

    Args:
        name (str): What is measured.
        value (float, optional): The measurement; None when it could not be measured.
        op (str): '<=' or '>='.
        threshold (float): The bound.
        spread (str, optional): The spread of ``value`` over rounds, e.g. '1.8-2.3'.

    Example:
        >>> Goal('ratio', 2.0, '<=', 2.0).met
        True
        >>> Goal('ratio', None, '<=', 2.0).met is None
        True
    """

    name: str
    value: Optional[float]
    op: str
    threshold: float
    spread: Optional[str] = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f'op must be one of {OPS}, got {self.op!r}')

    @property
    def met(self) -> Optional[bool]:
        """Whether the value satisfies the bound; None when there is no value."""
        if self.value is None:
            return None
        if self.op == '<=':
            return self.value <= self.threshold
        return self.value >= self.threshold

    def to_dict(self) -> Dict[str, Any]:
        """The goal's fields and ``met``, for JSON."""
        return dict(dataclasses.asdict(self), met=self.met)


def _ratio_goal(name: str, summary: Optional[Mapping[str, Any]], op: str,
                threshold: float) -> Goal:
    """A goal on the median of a RatioSummary dict, with its spread."""
    if not summary:
        return Goal(name, None, op, threshold)
    return Goal(name, summary['median'], op, threshold,
                f'{summary["low"]:.2f}-{summary["high"]:.2f}')


def _peak(run: Optional[Mapping[str, Any]]) -> Optional[float]:
    return None if not run or 'error' in run else run.get('train_peak_bytes')


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def judge(results: Mapping[str, Any], thresholds: GoalThresholds) -> List[Goal]:
    """The goals of a benchmark's results (all at the trained state).

    Args:
        results (Mapping): The benchmark's results: ``mdeq`` and ``hrnet`` (names),
            ``step_ratios`` (per thread count, per comparison, a RatioSummary dict),
            ``starts`` (per thread count, a :func:`~mdeq_mm.analysis.starts.start_speed`
            result), ``memory`` (runs keyed ``implicit-<n>`` and
            ``unrolled-<n>``), ``memory_f_evals``, ``solvers`` (per thread count, a
            :func:`~mdeq_mm.analysis.solvers.race` result), ``f`` (per thread count, the
            :func:`~mdeq_mm.analysis.f_speed.f_variants` result under ``variants``).
        thresholds (GoalThresholds): The bounds.

    Returns:
        list[Goal]: In report order; goals whose inputs are missing have no value.
    """
    t = thresholds
    goals = []
    mdeq, hrnet = results.get('mdeq', 'MDEQ'), results.get('hrnet', 'HRNet')
    for threads, ratios in results.get('step_ratios', {}).items():
        goals.append(_ratio_goal(f'{mdeq} implicit / {hrnet} training step, '
                                 f'{threads} thread(s)', ratios.get('implicit_over_hrnet'),
                                 '<=', t.step_time_vs_hrnet))
        if 'recipe_over_hrnet' in ratios:
            goals.append(_ratio_goal(f'{mdeq} recommended recipe / {hrnet} training step, '
                                     f'{threads} thread(s)', ratios['recipe_over_hrnet'],
                                     '<=', t.recipe_step_vs_hrnet))
    for threads, starts in results.get('starts', {}).items():
        goals.append(Goal(f'evaluation solver steps, learned / cold start, {threads} thread(s)',
                          _ratio(starts['learned']['steps'], starts['cold']['steps']), '<=',
                          t.learned_start_steps))
    memory = results.get('memory', {})
    n = results.get('memory_f_evals')
    goals.append(Goal(f'implicit / unrolled training peak memory at {n} f-evals',
                      _ratio(_peak(memory.get(f'implicit-{n}')),
                             _peak(memory.get(f'unrolled-{n}'))),
                      '<=', t.implicit_vs_unrolled_memory))
    budgets = sorted(int(k.split('-')[1]) for k in memory if k.startswith('implicit-'))
    if budgets:
        lo, hi = budgets[0], budgets[-1]
        goals.append(Goal(f'implicit training peak memory at {hi} / at {lo} f-evals',
                          _ratio(_peak(memory.get(f'implicit-{hi}')),
                                 _peak(memory.get(f'implicit-{lo}'))), '<=', t.flat_memory))
    for threads, race in results.get('solvers', {}).items():
        for kind in ('broyden', 'anderson'):
            ours = race.get(f'ours/{kind}')
            goals.append(Goal(f'our {kind}: time outside f / solve, {threads} thread(s)',
                              ours and ours['overhead_fraction'], '<=', t.solver_overhead))
            goals.append(_ratio_goal(f'our {kind} / TorchDEQ time outside f, {threads} '
                                     'thread(s)',
                                     race.get(f'{kind}/overhead_ours_over_torchdeq'), '<=',
                                     t.overhead_vs_torchdeq))
    for threads, f_result in results.get('f', {}).items():
        for kind, by_variant in f_result.get('variants', {}).items():
            for key, summary in by_variant.items():
                if key.endswith('/eager_over_variant'):
                    goals.append(_ratio_goal(f'{key.split("/")[0]} speed-up of f ({kind}), '
                                             f'{threads} thread(s)', summary, '>=',
                                             t.f_variant_speedup))
    return goals
