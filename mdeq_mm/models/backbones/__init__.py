from .mdeq import MDEQ, FixedPointProblem

__all__ = ['MDEQ', 'FixedPointProblem']
