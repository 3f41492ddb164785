"""Jacobian regularization of the MDEQ layer on a schedule, as the ``loss_jac`` loss."""
from typing import Any, Dict, Optional, Tuple

from mmengine.hooks.hook import DATA_BATCH
from mmengine.registry import HOOKS
from torch import nn

from mdeq_mm.deq.checks import check_int, check_number
from .mdeq_hook import MDEQHook, forward_mode, iteration_rng

LOSS_KEY = 'loss_jac'


@HOOKS.register_module()
class JacobianRegHook(MDEQHook):
    """Add ``weight * ||J_f||_F^2 / numel`` to the losses on a random fraction of iterations.

    The Hutchinson estimate of the Frobenius norm of the layer's Jacobian at the fixed point
    (Bai et al., 2021) keeps the equilibrium well-conditioned and the solvers fast. On a
    regularized iteration the hook sets the backbone's ``jacobian_probes`` before the forward
    and a forward hook on the data model adds ``loss_jac = weight * backbone.jacobian_loss`` to
    the loss dict (``mode='loss'``), so the optim wrapper backpropagates it like any other
    loss; no model class needs changing. ``jacobian_probes`` is reset to 0 after the iteration
    and before validation and testing.

    Whether iteration ``i`` is regularized is decided by
    ``np.random.default_rng((seed, i)).random() < prob``: the same on every rank, and a
    resumed run repeats the original choices. The weight at iteration ``i`` is
    ``weight + ramp_step * ((i - start_iter) // ramp_interval)``, ``warmup_weight`` instead
    while the backbone trains in 'unrolled' mode (if given), 0 before ``start_iter`` and from
    ``stop_iter`` on. The current weight is logged as ``train/jac_weight``.

    Args:
        weight (float): Loss weight gamma (>= 0).
        prob (float): Probability in [0, 1] that an iteration is regularized.
        ramp_step (float): Added to the weight every ``ramp_interval`` iterations (>= 0).
            Defaults to 0.
        ramp_interval (int, optional): Iterations between ramp steps; required if
            ``ramp_step`` is not 0. Defaults to None.
        start_iter (int): First iteration with regularization; the ramp counts from it.
            Defaults to 0.
        stop_iter (int, optional): First iteration without regularization. Defaults to None
            (never stop).
        warmup_weight (float, optional): Weight while the backbone is in 'unrolled' mode.
            Defaults to None (the scheduled weight).
        num_probes (int): Hutchinson probe vectors per estimate. Defaults to 1.
        seed (int): Seed of the per-iteration decision. Defaults to 0.

    Example:
        >>> custom_hooks = [
        ...     dict(type='DEQWarmupHook', warmup_iters=1000),
        ...     dict(type='JacobianRegHook', weight=0.4, prob=0.3, ramp_step=0.1,
        ...          ramp_interval=5000, stop_iter=40000, warmup_weight=0.)
        ... ]
    """

    priority = 'NORMAL'

    def __init__(self,
                 weight: float,
                 prob: float,
                 ramp_step: float = 0.,
                 ramp_interval: Optional[int] = None,
                 start_iter: int = 0,
                 stop_iter: Optional[int] = None,
                 warmup_weight: Optional[float] = None,
                 num_probes: int = 1,
                 seed: int = 0) -> None:
        name = type(self).__name__
        check_number(f'{name} weight', weight, 0.0, low_inclusive=True)
        check_number(f'{name} prob', prob, 0.0, 1.0, low_inclusive=True)
        check_number(f'{name} ramp_step', ramp_step, 0.0, low_inclusive=True)
        if ramp_interval is not None:
            check_int(f'{name} ramp_interval', ramp_interval, 1)
        elif ramp_step:
            raise ValueError(f'{name} ramp_step={ramp_step!r} needs a ramp_interval (iterations '
                             'between ramp steps)')
        check_int(f'{name} start_iter', start_iter, 0)
        if stop_iter is not None:
            check_int(f'{name} stop_iter', stop_iter, 0)
        if warmup_weight is not None:
            check_number(f'{name} warmup_weight', warmup_weight, 0.0, low_inclusive=True)
        check_int(f'{name} num_probes', num_probes, 1)
        check_int(f'{name} seed', seed, 0)
        self.weight = weight
        self.prob = prob
        self.ramp_step = ramp_step
        self.ramp_interval = ramp_interval
        self.start_iter = start_iter
        self.stop_iter = stop_iter
        self.warmup_weight = warmup_weight
        self.num_probes = num_probes
        self.seed = seed
        self._active_weight = 0.0

    def weight_at(self, iteration: int, deq_mode: str) -> float:
        """Scheduled weight at ``iteration`` with the backbone in ``deq_mode``."""
        if iteration < self.start_iter or (self.stop_iter is not None
                                           and iteration >= self.stop_iter):
            return 0.0
        if deq_mode == 'unrolled' and self.warmup_weight is not None:
            return float(self.warmup_weight)
        ramps = (iteration - self.start_iter) // self.ramp_interval if self.ramp_interval else 0
        return float(self.weight + self.ramp_step * ramps)

    def is_regularized(self, iteration: int) -> bool:
        """Whether ``iteration`` draws the regularizer (before the weight is considered)."""
        return bool(iteration_rng(self.seed, iteration).random() < self.prob)

    def before_run(self, runner) -> None:
        """Find the backbone and hook the loss dict of the data model."""
        super().before_run(runner)
        self.hook_model_forward(runner, self._add_loss)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        """Decide this iteration's weight and arm the backbone's Jacobian estimate."""
        weight = self.weight_at(runner.iter, self.backbone.deq_mode)
        runner.message_hub.update_scalar('train/jac_weight', weight)
        active = weight > 0 and self.is_regularized(runner.iter)
        self._active_weight = weight if active else 0.0
        self.backbone.jacobian_probes = self.num_probes if active else 0

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        self._disarm()

    def before_val(self, runner) -> None:
        self._disarm()

    def before_test(self, runner) -> None:
        self._disarm()

    def _disarm(self) -> None:
        self._active_weight = 0.0
        self.backbone.jacobian_probes = 0

    def _add_loss(self, module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                  output: Any) -> Optional[Dict[str, Any]]:
        """Forward hook: a copy of the loss dict with ``loss_jac`` added, if due."""
        if not self._active_weight or not isinstance(output, dict):
            return None
        mode = forward_mode(args, kwargs)
        jacobian_loss = self.backbone.jacobian_loss
        if mode != 'loss' or jacobian_loss is None:
            return None
        return {**output, LOSS_KEY: self._active_weight * jacobian_loss}
