"""Solver statistics of the MDEQ in the training and evaluation logs, and per-sample flags."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import LoggerHook
from mmengine.hooks.hook import DATA_BATCH
from mmengine.registry import HOOKS
from torch import Tensor, nn

from mdeq_mm.deq.checks import check_int, check_number
from .mdeq_hook import MDEQHook, forward_mode

FWD_STEPS = 'deq_fwd_steps'
FWD_REL_RES = 'deq_fwd_rel_res'
FWD_FALLBACKS = 'deq_fwd_fallbacks'
NONFINITE_INPUTS = 'deq_nonfinite_inputs'
BWD_STEPS = 'deq_bwd_steps'
BWD_REL_RES = 'deq_bwd_rel_res'
BWD_UNCONVERGED = 'deq_bwd_unconverged'
TRAIN_KEYS = (FWD_STEPS, FWD_REL_RES, FWD_FALLBACKS, NONFINITE_INPUTS, BWD_STEPS, BWD_REL_RES,
              BWD_UNCONVERGED)
EVAL_KEYS = (FWD_STEPS, FWD_REL_RES, FWD_FALLBACKS, NONFINITE_INPUTS)
FAILED_FLAG = 'deq_failed'
REMOVED_KEY = 'deq_fallbacks'


@HOOKS.register_module()
class DEQSolverStatsHook(MDEQHook):
    """Log how hard the MDEQ solvers work, flag unreliable predictions, and warn when the
    forward solve stops converging.

    After every training iteration it writes batch means to the MessageHub, averaged across
    ranks with one small ``all_reduce``: ``train/deq_nonfinite_inputs`` (fraction of images
    with NaN/Inf values, which the backbone replaced by zeros and excluded from the gradient)
    and, at equilibrium, ``train/deq_fwd_steps``, ``train/deq_fwd_rel_res`` (forward solver
    steps and relative residual ``||f(z) - z|| / ||f(z)||``), ``train/deq_fwd_fallbacks``
    (fraction of samples whose forward solve hit NaN/Inf or diverged, so the configured
    fallback ran), and, with an implicit backward, ``train/deq_bwd_steps``,
    ``train/deq_bwd_rel_res`` and ``train/deq_bwd_unconverged`` (fraction of samples whose
    backward solve missed its tolerance, so its ``on_fail`` policy applied). They show as means
    over the LoggerHook interval: the hook appends ``dict(data_src=key, method_name='mean',
    window_size=interval)`` to the log processor's ``custom_cfg`` unless a key is configured
    there already. ``deq_fallbacks`` of earlier versions counted forward and backward events
    together; it is now ``deq_fwd_fallbacks`` and ``deq_bwd_unconverged``.

    Validation and testing log ``val/`` (``test/``) ``deq_fwd_steps``, ``deq_fwd_rel_res``,
    ``deq_fwd_fallbacks`` and ``deq_nonfinite_inputs`` once per run, as the mean over all
    samples of all ranks, before the LoggerHook writes the epoch log, and a warning if any
    sample was flagged. Every predicted data sample gets ``deq_failed`` in its metainfo (the
    backbone's :attr:`~mdeq_mm.models.MDEQ.last_failed`: NaN/Inf image, or forward solve hit
    NaN/Inf or diverged), set by a forward hook on the data model so that metrics, ``--out``
    and visualizers see it. Both read the backbone after each batch, so they see one backbone
    call per batch (whole-image inference; with sliding windows, the last window).

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
        """Find the backbone, flag predictions, and make the training keys window means."""
        super().before_run(runner)
        self.hook_model_forward(runner, self._flag_predictions)
        interval = next((hook.interval for hook in runner.hooks if isinstance(hook, LoggerHook)),
                        runner.log_processor.window_size)
        self._window_size = self.warn_window or interval
        custom_cfg = runner.log_processor.custom_cfg
        configured = {cfg['data_src'] for cfg in custom_cfg}
        configured |= {cfg.get('log_name') for cfg in custom_cfg}
        if REMOVED_KEY in configured:
            runner.logger.warning(
                f'log_processor.custom_cfg names {REMOVED_KEY!r}, which is no longer logged: '
                f'use {FWD_FALLBACKS!r} (forward NaN/divergence fallbacks) and '
                f'{BWD_UNCONVERGED!r} (backward tolerance misses)')
        for key in TRAIN_KEYS:
            if key not in configured:
                custom_cfg.append(dict(data_src=key, method_name='mean', window_size=interval))

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        """Log this iteration's solver statistics (after ``loss.backward()``)."""
        nonfinite = self.backbone.last_nonfinite_input
        if nonfinite is None:
            return
        values = {NONFINITE_INPUTS: nonfinite.float().mean()}
        fwd = self.backbone.last_forward_stats
        if fwd is not None:
            values[FWD_STEPS] = fwd.steps.float().mean()
            values[FWD_REL_RES] = fwd.rel_res.float().mean()
            values[FWD_FALLBACKS] = fwd.failed.float().mean()
        bwd = self.backbone.last_backward_stats
        if bwd is not None:
            values[BWD_STEPS] = bwd.steps.float().mean()
            values[BWD_REL_RES] = bwd.rel_res.float().mean()
            values[BWD_UNCONVERGED] = (~bwd.converged | bwd.failed).float().mean()
        reduced = torch.stack(list(values.values()))
        all_reduce(reduced, op='mean')
        means = dict(zip(values, reduced.tolist()))
        for key, value in means.items():
            runner.message_hub.update_scalar(f'train/{key}', value)
        if fwd is not None:
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

    # mmengine's Hook hands before_{val,test}_epoch, after_{val,test}_iter and
    # after_{val,test}_epoch to the three methods below with the loop's mode.
    def _before_epoch(self, runner, mode: str = 'train') -> None:
        if mode == 'train':
            return
        # The window mean configured for the training keys also applies to these keys, so
        # earlier runs' values are dropped to make the logged value this run's mean.
        for key in EVAL_KEYS:
            runner.message_hub.log_scalars.pop(f'{mode}/{key}', None)
        self._eval_sums = None

    def _after_iter(self,
                    runner,
                    batch_idx: int,
                    data_batch: DATA_BATCH = None,
                    outputs: Optional[Sequence] = None,
                    mode: str = 'train') -> None:
        if mode != 'train':
            self._collect_eval()

    def _after_epoch(self, runner, mode: str = 'train') -> None:
        if mode != 'train':
            self._log_eval(runner, mode)

    def _collect_eval(self) -> None:
        fwd = self.backbone.last_forward_stats
        if fwd is None:
            return
        sums = torch.stack([  # EVAL_KEYS' totals, then the number of samples
            fwd.steps.double().sum(),
            fwd.rel_res.double().sum(),
            fwd.failed.double().sum(),
            self.backbone.last_nonfinite_input.double().sum(),
            fwd.steps.new_tensor(fwd.steps.numel(), dtype=torch.float64),
        ])
        self._eval_sums = sums if self._eval_sums is None else self._eval_sums + sums

    def _log_eval(self, runner, mode: str) -> None:
        """Mean over all samples of all ranks (every rank joins the reduction)."""
        sums = self._eval_sums if self._eval_sums is not None else torch.zeros(
            len(EVAL_KEYS) + 1, dtype=torch.float64)
        all_reduce(sums, op='sum')
        *totals, samples = sums.tolist()
        if samples == 0:
            return
        for key, total in zip(EVAL_KEYS, totals):
            runner.message_hub.update_scalar(f'{mode}/{key}', total / samples)
        failed, nonfinite = totals[2:]
        if failed or nonfinite:
            runner.logger.warning(
                f'{mode}: of {samples:.0f} samples, {nonfinite:.0f} had NaN/Inf values and '
                f'{failed:.0f} had a forward solve that hit NaN/Inf or diverged; their '
                f'predictions come from a fallback and carry {FAILED_FLAG}=True in their '
                'metainfo')

    def _flag_predictions(self, module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                          output: Any) -> None:
        """Forward hook: ``deq_failed`` into the metainfo of each predicted data sample."""
        mode = forward_mode(args, kwargs)
        failed = self.backbone.last_failed
        if mode != 'predict' or failed is None or len(output) != len(failed):
            return
        for sample, flag in zip(output, failed.tolist()):
            sample.set_metainfo({FAILED_FLAG: flag})
