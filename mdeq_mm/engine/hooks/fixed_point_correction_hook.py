"""Fixed-point correction: the task loss also on states sampled along the MDEQ's solve."""
from typing import Any, Dict, Optional, Tuple

from mmengine.hooks.hook import DATA_BATCH
from mmengine.registry import HOOKS
from torch import nn

from mdeq_mm.deq import TrajectoryConfig
from mdeq_mm.deq.checks import check_int, check_number
from mdeq_mm.models.losses import correction_weights, fixed_point_correction_losses
from .mdeq_hook import MDEQHook, forward_mode, iteration_rng

DATA_SAMPLES_POSITION = 1


@HOOKS.register_module()
class FixedPointCorrectionHook(MDEQHook):
    """Add the model's own losses on ``n_states`` states of the training solve (DEQ-Flow).

    Before the run the hook asks the backbone's DEQ core to sample ``n_states`` states along
    every training solve, evenly over its budget, each re-attached to the graph by ``k``
    damped steps of ``f`` (``k=1, tau=1``: a Jacobian-free gradient; see
    :class:`mdeq_mm.deq.TrajectoryConfig`). A forward hook on the data model then decodes them
    with the model's own neck and heads (mmseg ``EncoderDecoder``: decode and auxiliary heads;
    mmpretrain ``ImageClassifier``: head) and adds each loss term, weighted, to the loss dict as
    ``fpc{k}.<key>`` (e.g. ``fpc0.decode.loss_ce``), so the optim wrapper backpropagates them with
    the others and the logger shows each. With the final state (the ordinary loss, weight 1)
    the trajectory has ``n = n_states + 1`` states, and state ``k`` weighs ``gamma ** (n-k-1)``
    (``weighting='exp'``) or 1 (``'constant'``). No model class changes: add the hook to a
    stock config whose backbone is an MDEQ.

    With ``prob < 1`` only a random fraction of the iterations is corrected (the others cost
    what a plain step costs): iteration ``i`` is corrected if
    ``np.random.default_rng((seed, i)).random() < prob``, the same on every rank, and a
    resumed run repeats the draws.

    Every process samples the same number of states (a solve that stops early repeats its
    final state), so distributed runs stay in step. Nothing is added during an unrolled
    warm-up, nor in validation and testing.

    Args:
        n_states (int): Sampled states (>= 1). Defaults to 2.
        gamma (float): Decay of the exponential weights, in (0, 1]. Defaults to 0.8.
        weighting (str): 'exp' or 'constant'. Defaults to 'exp'.
        k (int): Differentiable steps of f per state. Defaults to 1.
        tau (float): Damping of those steps, in (0, 1]. Defaults to 1.0.
        prob (float): Fraction of the training iterations corrected, in (0, 1].
            Defaults to 1.0.
        seed (int): Seed of the per-iteration draw when ``prob < 1``. Defaults to 0.

    Example:
        >>> custom_hooks = [dict(type='FixedPointCorrectionHook', n_states=2, gamma=0.8)]
    """

    priority = 'NORMAL'

    def __init__(self,
                 n_states: int = 2,
                 gamma: float = 0.8,
                 weighting: str = 'exp',
                 k: int = 1,
                 tau: float = 1.0,
                 prob: float = 1.0,
                 seed: int = 0) -> None:
        name = type(self).__name__
        check_int(f'{name} n_states', n_states, 1)
        check_number(f'{name} prob', prob, 0.0, 1.0)
        check_int(f'{name} seed', seed, 0)
        self.weights = correction_weights(n_states, gamma, weighting)
        self.trajectory_cfg = TrajectoryConfig(n_states=n_states, k=k, tau=tau)
        self.prob = prob
        self.seed = seed

    def before_run(self, runner) -> None:
        """Ask the backbone for its trajectory and hook the loss dict of the data model."""
        super().before_run(runner)
        self._saved_cfg = self.backbone.deq.trajectory_cfg
        self.backbone.deq.trajectory_cfg = self.trajectory_cfg
        self.hook_model_forward(runner, self._add_losses)

    def corrects(self, iteration: int) -> bool:
        """Whether training iteration ``iteration`` is corrected."""
        return self.prob == 1.0 or bool(
            iteration_rng(self.seed, iteration).random() < self.prob)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        """Sample states in this iteration's solve, or none if it is not corrected."""
        self.backbone.deq.trajectory_cfg = (self.trajectory_cfg if self.corrects(runner.iter)
                                            else self._saved_cfg)

    def after_run(self, runner) -> None:
        super().after_run(runner)
        self.backbone.deq.trajectory_cfg = self._saved_cfg

    def _add_losses(self, module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                    output: Any) -> Optional[Dict[str, Any]]:
        """Forward hook: a copy of the loss dict with the correction terms added."""
        states = self.backbone.last_trajectory
        if states is None or not isinstance(output, dict) or forward_mode(args, kwargs) != 'loss':
            return None
        data_samples = kwargs.get('data_samples')
        if data_samples is None and len(args) > DATA_SAMPLES_POSITION:
            data_samples = args[DATA_SAMPLES_POSITION]
        return {**output, **fixed_point_correction_losses(module, states, data_samples,
                                                          self.weights)}
