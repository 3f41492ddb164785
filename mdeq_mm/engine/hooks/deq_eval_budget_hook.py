"""Forward solver budget of MDEQ evaluation, and a spectral-radius diagnostic."""
from typing import Optional

import torch
from mmengine.hooks.hook import DATA_BATCH
from mmengine.registry import HOOKS

from mdeq_mm.deq import spectral_radius
from mdeq_mm.deq.checks import check_int
from mdeq_mm.models.backbones.solver_stats_reporter import hub_key
from .mdeq_hook import MDEQHook, unwrap_model

# shown as 'val/deq_spectral_radius' (mmengine's LogProcessor strips the first 'val/')
SPECTRAL_RADIUS_KEY = hub_key('val', 'deq_spectral_radius')


@HOOKS.register_module()
class DEQEvalBudgetHook(MDEQHook):
    """Evaluate the MDEQ with its own forward solver budget (anytime inference).

    Sets the backbone's ``eval_max_iter`` to ``max_iter`` for validation and testing and
    restores the previous value afterwards, so a model trained with one step budget can be
    evaluated with fewer or more steps.

    With ``spectral_radius=True`` it also logs ``val/deq_spectral_radius``: on the first
    validation batch it runs the data preprocessor and the backbone on ``num_samples`` images
    (no gradients), then estimates the spectral radius of the layer's Jacobian at the
    equilibrium by ``power_iters`` steps of power iteration and logs the largest over the
    samples. A radius near or above 1 means the fixed point is hard to reach or unstable.

    Args:
        max_iter (int, optional): Forward solver steps in evaluation; None keeps the
            backbone's own ``eval_max_iter``. Defaults to None.
        spectral_radius (bool): Log the spectral-radius estimate at validation.
            Defaults to False.
        power_iters (int): Power iterations of the estimate. Defaults to 50.
        num_samples (int): Images of the first validation batch to probe (at most the batch
            size). Defaults to 1.

    Example:
        >>> custom_hooks = [
        ...     dict(type='DEQEvalBudgetHook', max_iter=8, spectral_radius=True,
        ...          power_iters=100)
        ... ]
    """

    priority = 'NORMAL'

    def __init__(self,
                 max_iter: Optional[int] = None,
                 spectral_radius: bool = False,
                 power_iters: int = 50,
                 num_samples: int = 1) -> None:
        name = type(self).__name__
        if max_iter is not None:
            check_int(f'{name} max_iter', max_iter, 1)
        if not isinstance(spectral_radius, bool):
            raise ValueError(f'{name} spectral_radius must be a bool, got {spectral_radius!r}')
        check_int(f'{name} power_iters', power_iters, 1)
        check_int(f'{name} num_samples', num_samples, 1)
        self.max_iter = max_iter
        self.spectral_radius = spectral_radius
        self.power_iters = power_iters
        self.num_samples = num_samples

    # mmengine's Hook hands before_{val,test}_epoch and after_{val,test}_epoch to these two
    # methods with the loop's mode.
    def _before_epoch(self, runner, mode: str = 'train') -> None:
        if mode == 'train':
            return
        self._saved_max_iter = self.backbone.eval_max_iter
        if self.max_iter is not None:
            self.backbone.eval_max_iter = self.max_iter

    def _after_epoch(self, runner, mode: str = 'train') -> None:
        if mode != 'train':
            self.backbone.eval_max_iter = self._saved_max_iter

    def before_val_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        """Estimate the spectral radius on the first batch, if asked to."""
        if self.spectral_radius and batch_idx == 0:
            radius = self.estimate_spectral_radius(runner.model, data_batch)
            runner.message_hub.update_scalar(SPECTRAL_RADIUS_KEY, radius)

    def estimate_spectral_radius(self, model: torch.nn.Module, data_batch: DATA_BATCH) -> float:
        """Largest spectral radius of ``J_f(z*)`` over the first ``num_samples`` images."""
        backbone = self.backbone
        was_training = backbone.training
        backbone.eval()
        try:
            with torch.no_grad():
                inputs = unwrap_model(model).data_preprocessor(data_batch, False)['inputs']
                f, z0 = backbone.fixed_point_problem(inputs[:self.num_samples])
                z_star = backbone.deq(f, z0)
            radius = spectral_radius(f, z_star, self.power_iters)
        finally:
            backbone.train(was_training)
        return float(radius.max())
