"""Solver statistics of the MDEQ in the training and evaluation logs."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook, LoggerHook
from mmengine.hooks.hook import DATA_BATCH
from mmengine.registry import HOOKS
from torch import Tensor

from mdeq_mm.deq.solve import check_int, check_number
from .mdeq_backbone import get_mdeq_backbone

FWD_STEPS = 'deq_fwd_steps'
FWD_REL_RES = 'deq_fwd_rel_res'
BWD_STEPS = 'deq_bwd_steps'
BWD_REL_RES = 'deq_bwd_rel_res'
FALLBACKS = 'deq_fallbacks'
TRAIN_KEYS = (FWD_STEPS, FWD_REL_RES, BWD_STEPS, BWD_REL_RES, FALLBACKS)
EVAL_KEYS = (FWD_STEPS, FWD_REL_RES, FALLBACKS)


@HOOKS.register_module()
class DEQSolverStatsHook(Hook):
    """Log how hard the MDEQ solvers work, and warn when the forward solve stops converging.

    After every training iteration at equilibrium it writes batch means to the MessageHub:
    ``train/deq_fwd_steps``, ``train/deq_fwd_rel_res`` (forward solver steps and relative
    residual ``||f(z) - z|| / ||f(z)||``), ``train/deq_bwd_steps``, ``train/deq_bwd_rel_res``
    (implicit backward solve, if the backbone uses one) and ``train/deq_fallbacks`` (fallback
    events, see :class:`~mdeq_mm.deq.DEQCore`), averaged across ranks with one small
    ``all_reduce``. They show as means over the LoggerHook interval: the hook appends
    ``dict(data_src=key, method_name='mean', window_size=interval)`` to the log processor's
    ``custom_cfg`` unless a key is configured there already. Unrolled (warm-up) iterations have
    no solver and log nothing for these keys.

    Validation and testing log ``val/`` (``test/``) ``deq_fwd_steps``, ``deq_fwd_rel_res`` and
    ``deq_fallbacks`` once per run, as the mean over all samples of all ranks, before the
    LoggerHook writes the epoch log. This reads the backbone's statistics after each batch, so
    it sees one backbone call per batch (whole-image inference).

    A warning is logged when the forward relative residual of every iteration of a window of
    ``warn_window`` equilibrium iterations is above ``warn_threshold`` (once per window).

    Args:
        warn_threshold (float, optional): Relative residual regarded as "not converged";
            0.05 is the MDEQ authors' rule of thumb. None disables the warning.
            Defaults to 0.05.
        warn_window (int, optional): Iterations of a warning window. Defaults to the
            LoggerHook interval.

    Example:
        >>> custom_hooks = [dict(type='DEQSolverStatsHook', warn_threshold=0.05)]
    """

    priority = 'NORMAL'

    def __init__(self,
                 warn_threshold: Optional[float] = 0.05,
                 warn_window: Optional[int] = None) -> None:
        name = type(self).__name__
        if warn_threshold is not None:
            check_number(f'{name} warn_threshold', warn_threshold, 0.0)
        if warn_window is not None:
            check_int(f'{name} warn_window', warn_window, 1)
        self.warn_threshold = warn_threshold
        self.warn_window = warn_window
        self._window: List[float] = []
        self._window_size = warn_window
        self._eval_sums: Optional[Tensor] = None

    def before_run(self, runner) -> None:
        """Find the backbone and make the training keys window means in the log."""
        self.backbone = get_mdeq_backbone(runner.model, type(self).__name__)
        interval = next((hook.interval for hook in runner.hooks if isinstance(hook, LoggerHook)),
                        runner.log_processor.window_size)
        self._window_size = self.warn_window or interval
        custom_cfg = runner.log_processor.custom_cfg
        configured = {cfg['data_src'] for cfg in custom_cfg}
        configured |= {cfg.get('log_name') for cfg in custom_cfg}
        for key in TRAIN_KEYS:
            if key not in configured:
                custom_cfg.append(dict(data_src=key, method_name='mean', window_size=interval))

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        """Remember the fallback count to log this iteration's increase."""
        self._fallbacks_before = self.backbone.deq.fallback_count

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        """Log this iteration's solver statistics (after ``loss.backward()``)."""
        fwd = self.backbone.last_forward_stats
        if fwd is None:
            return
        values = {
            FWD_STEPS: fwd.steps.float().mean(),
            FWD_REL_RES: fwd.rel_res.float().mean(),
            FALLBACKS: fwd.rel_res.new_tensor(self.backbone.deq.fallback_count -
                                              self._fallbacks_before).float(),
        }
        bwd = self.backbone.last_backward_stats
        if bwd is not None:
            values[BWD_STEPS] = bwd.steps.float().mean()
            values[BWD_REL_RES] = bwd.rel_res.float().mean()
        reduced = torch.stack(list(values.values()))
        all_reduce(reduced, op='mean')
        means = dict(zip(values, reduced.tolist()))
        for key, value in means.items():
            runner.message_hub.update_scalar(f'train/{key}', value)
        self._check_convergence(runner, means[FWD_REL_RES])

    def _check_convergence(self, runner, rel_res: float) -> None:
        """Warn once per window if the residual stayed above the threshold all along."""
        if self.warn_threshold is None:
            return
        self._window.append(rel_res)
        if len(self._window) < self._window_size:
            return
        window, self._window = self._window, []
        if min(window) > self.warn_threshold:
            runner.logger.warning(
                f'DEQ forward solver not converging: relative residual above '
                f'{self.warn_threshold} for the last {len(window)} equilibrium iterations '
                f'(up to iter {runner.iter + 1}): mean {sum(window) / len(window):.4g}, '
                f'min {min(window):.4g}, max {max(window):.4g}. Consider a larger forward '
                'max_iter, Jacobian regularization (JacobianRegHook) or a lower learning rate.')

    def before_val_epoch(self, runner) -> None:
        self._begin_eval(runner, 'val')

    def after_val_iter(self,
                       runner,
                       batch_idx: int,
                       data_batch: DATA_BATCH = None,
                       outputs: Optional[Sequence] = None) -> None:
        self._collect_eval()

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self._log_eval(runner, 'val')

    def before_test_epoch(self, runner) -> None:
        self._begin_eval(runner, 'test')

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: DATA_BATCH = None,
                        outputs: Optional[Sequence] = None) -> None:
        self._collect_eval()

    def after_test_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self._log_eval(runner, 'test')

    def _begin_eval(self, runner, mode: str) -> None:
        # The window mean configured for the training keys also applies to these keys, so
        # earlier runs' values are dropped to make the logged value this run's mean.
        for key in EVAL_KEYS:
            runner.message_hub.log_scalars.pop(f'{mode}/{key}', None)
        self._eval_sums = None
        self._eval_fallbacks_before = self.backbone.deq.fallback_count

    def _collect_eval(self) -> None:
        fwd = self.backbone.last_forward_stats
        if fwd is None:
            return
        sums = torch.stack([
            fwd.steps.double().sum(),
            fwd.rel_res.double().sum(),
            fwd.steps.new_tensor(fwd.steps.numel(), dtype=torch.float64),
            fwd.steps.new_tensor(1, dtype=torch.float64),
        ])
        self._eval_sums = sums if self._eval_sums is None else self._eval_sums + sums

    def _log_eval(self, runner, mode: str) -> None:
        """Mean over all samples of all ranks (every rank joins the reduction)."""
        sums = self._eval_sums if self._eval_sums is not None else torch.zeros(
            4, dtype=torch.float64)
        fallbacks = self.backbone.deq.fallback_count - self._eval_fallbacks_before
        totals = torch.cat([sums, sums.new_tensor([fallbacks])])
        all_reduce(totals, op='sum')
        steps, rel_res, samples, batches, fallbacks = totals.tolist()
        if samples == 0:
            return
        runner.message_hub.update_scalar(f'{mode}/{FWD_STEPS}', steps / samples)
        runner.message_hub.update_scalar(f'{mode}/{FWD_REL_RES}', rel_res / samples)
        runner.message_hub.update_scalar(f'{mode}/{FALLBACKS}', fallbacks / batches)
