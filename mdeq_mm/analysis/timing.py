"""Timing that survives a shared machine: interleaved rounds and per-round ratios.

A burst of load from another job lands on whatever runs at that moment. Timing contender A in
one block and B in another lets the burst hit only one of them; timing them in rounds
(A B A B ...) and taking the ratio within each round lets both see nearly the same load, and
the median of the per-round ratios with its spread (min, max) is the figure to compare.
"""
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Sequence


def interleaved_times(contenders: Mapping[str, Callable[[], float]],
                      rounds: int) -> Dict[str, List[float]]:
    """Call every contender once per round, in turn, and collect what each call returns.

    Args:
        contenders (Mapping[str, Callable]): Name to a call that runs one timed unit and
            returns its seconds (it may time itself, e.g. in another process).
        rounds (int): Rounds; each contender's list gets one entry per round.

    Returns:
        dict[str, list[float]]: Seconds per contender, round by round.

    Example:
        >>> times = interleaved_times({'a': lambda: 1.0, 'b': lambda: 2.0}, rounds=3)
        >>> times['b']
        [2.0, 2.0, 2.0]
    """
    if rounds < 1:
        raise ValueError(f'rounds must be >= 1, got {rounds!r}')
    times: Dict[str, List[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            times[name].append(run())
    return times


def time_call(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass(frozen=True)
class RatioSummary:
    """Median and spread of per-round ratios ``a / b``.

    Attributes:
        median (float): Median of the per-round ratios.
        low (float): Smallest per-round ratio.
        high (float): Largest per-round ratio.
        ratios (tuple[float]): The per-round ratios.
    """

    median: float
    low: float
    high: float
    ratios: tuple

    @classmethod
    def of(cls, a: Sequence[float], b: Sequence[float]) -> 'RatioSummary':
        """Summarize ``a[i] / b[i]`` over rounds ``i`` (the lists must pair up).

        Example:
            >>> s = RatioSummary.of([2.0, 3.0, 9.0], [1.0, 1.0, 1.0])
            >>> s.median, s.low, s.high
            (3.0, 2.0, 9.0)
        """
        if len(a) != len(b) or not a:
            raise ValueError(f'need two equally long, non-empty lists of times, got '
                             f'{len(a)} and {len(b)}')
        ratios = tuple(x / y for x, y in zip(a, b))
        return cls(statistics.median(ratios), min(ratios), max(ratios), ratios)

    def text(self, fmt: str = '.2f') -> str:
        """``median (low-high)``, e.g. ``'3.00 (2.00-9.00)'``."""
        return (f'{format(self.median, fmt)} ({format(self.low, fmt)}-'
                f'{format(self.high, fmt)})')
