"""Unrolled warm-up, then equilibrium training."""
from typing import Optional

from mmengine.hooks.hook import DATA_BATCH
from mmengine.registry import HOOKS

from mdeq_mm.deq.checks import check_int, check_number
from .mdeq_hook import MDEQHook


@HOOKS.register_module()
class DEQWarmupHook(MDEQHook):
    """Train the MDEQ unrolled for the first iterations, then at equilibrium.

    During the warm-up the backbone applies its layer ``unrolled_layers`` times from zero and
    backpropagates through all of them like an ordinary weight-tied network; afterwards it
    solves for the fixed point. The warm-up is either a fixed number of iterations or a
    fraction of the run (``warmup_ratio`` of ``runner.max_iters``, for iteration- and
    epoch-based loops alike), so that a schedule shortened with ``--cfg-options`` shortens its
    warm-up with it. The mode follows ``runner.iter`` before every training iteration, so a
    resumed run lands in the right mode. Validation and testing always solve for the
    equilibrium (the backbone does that in eval).

    The hook runs at ``ABOVE_NORMAL`` priority, so hooks that read the mode in
    ``before_train_iter`` (e.g. :class:`JacobianRegHook`) see the switched one.

    Args:
        warmup_iters (int, optional): Unrolled training iterations; 0 trains at equilibrium
            from the start. Give this or ``warmup_ratio``.
        warmup_ratio (float, optional): Unrolled fraction of the run's iterations, in [0, 1].

    Example:
        >>> custom_hooks = [dict(type='DEQWarmupHook', warmup_ratio=0.4)]
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 warmup_iters: Optional[int] = None,
                 warmup_ratio: Optional[float] = None) -> None:
        name = type(self).__name__
        if (warmup_iters is None) == (warmup_ratio is None):
            raise ValueError(f'{name} takes exactly one of warmup_iters and warmup_ratio, got '
                             f'warmup_iters={warmup_iters!r}, warmup_ratio={warmup_ratio!r}')
        if warmup_iters is not None:
            check_int(f'{name} warmup_iters', warmup_iters, 0)
        else:
            check_number(f'{name} warmup_ratio', warmup_ratio, 0.0, 1.0, low_inclusive=True)
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio

    def _mode_at(self, iteration: int) -> str:
        return 'unrolled' if iteration < self.warmup_iters else 'equilibrium'

    def before_train(self, runner) -> None:
        """Resolve the warm-up length, then set and log the mode training starts in."""
        if self.warmup_ratio is not None:
            self.warmup_iters = round(self.warmup_ratio * runner.max_iters)
        elif self.warmup_iters >= runner.max_iters:
            runner.logger.warning(
                f'DEQWarmupHook: warmup_iters={self.warmup_iters} covers the whole run of '
                f'{runner.max_iters} iterations, so the model never trains at equilibrium; '
                'use warmup_ratio to scale the warm-up with the schedule')
        mode = self._mode_at(runner.iter)
        self.backbone.deq_mode = mode
        if mode == 'unrolled':
            runner.logger.info(
                f'DEQWarmupHook: training starts at iter {runner.iter} in unrolled mode '
                f'({self.backbone.deq.n_layers} layers); equilibrium from iter '
                f'{self.warmup_iters}')
        else:
            runner.logger.info(f'DEQWarmupHook: training starts at iter {runner.iter} in '
                               'equilibrium mode')

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        """Switch the mode when ``runner.iter`` crosses the warm-up length."""
        mode = self._mode_at(runner.iter)
        if mode != self.backbone.deq_mode:
            self.backbone.deq_mode = mode
            runner.logger.info(f'DEQWarmupHook: switched to {mode} mode at iter {runner.iter}')
