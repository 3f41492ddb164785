"""Unrolled warm-up, then equilibrium training."""
from mmengine.hooks import Hook
from mmengine.hooks.hook import DATA_BATCH
from mmengine.registry import HOOKS

from mdeq_mm.deq.solve import check_int
from .mdeq_backbone import get_mdeq_backbone


@HOOKS.register_module()
class DEQWarmupHook(Hook):
    """Train the MDEQ unrolled for the first ``warmup_iters`` iterations, then at equilibrium.

    During the warm-up the backbone applies its layer ``unrolled_layers`` times from zero and
    backpropagates through all of them like an ordinary weight-tied network; afterwards it
    solves for the fixed point. The mode follows ``runner.iter`` before every training
    iteration, so a resumed run lands in the right mode. Validation and testing always solve
    for the equilibrium (the backbone does that in eval).

    The hook runs at ``ABOVE_NORMAL`` priority, so hooks that read the mode in
    ``before_train_iter`` (e.g. :class:`JacobianRegHook`) see the switched one.

    Args:
        warmup_iters (int): Unrolled training iterations; 0 trains at equilibrium from the
            start.

    Example:
        >>> custom_hooks = [dict(type='DEQWarmupHook', warmup_iters=3000)]
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, warmup_iters: int) -> None:
        check_int(f'{type(self).__name__} warmup_iters', warmup_iters, 0)
        self.warmup_iters = warmup_iters

    def _mode_at(self, iteration: int) -> str:
        return 'unrolled' if iteration < self.warmup_iters else 'equilibrium'

    def before_run(self, runner) -> None:
        """Fail early if the model has no MDEQ backbone."""
        self.backbone = get_mdeq_backbone(runner.model, type(self).__name__)

    def before_train(self, runner) -> None:
        """Set and log the mode training starts (or resumes) in."""
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
        """Switch the mode when ``runner.iter`` crosses ``warmup_iters``."""
        mode = self._mode_at(runner.iter)
        if mode != self.backbone.deq_mode:
            self.backbone.deq_mode = mode
            runner.logger.info(f'DEQWarmupHook: switched to {mode} mode at iter {runner.iter}')
