"""The MDEQ's solver statistics in the logs of the running MMEngine loop, without any hook.

The backbone hands its statistics to a :class:`SolverStatsReporter` after every forward (and
implicit backward); inside a Runner's train / val / test loop (MMEngine's ``RuntimeInfoHook``
keeps the loop's stage in the MessageHub's ``loop_stage``) the reporter writes them to the
current MessageHub, so a stock config with only the backbone swapped logs them.
"""
import logging
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

import torch
from mmengine.logging import MessageHub, print_log
from torch import Tensor

from mdeq_mm.deq import SolverStats

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
EVAL_STAGES = ('val', 'test')
# mmengine's LogProcessor averages the losses over its window_size, 10 by default.
DEFAULT_WINDOW = 10
# The MDEQ authors' rule of thumb for a converged forward solve.
DEFAULT_WARN_THRESHOLD = 0.05


def hub_key(stage: str, name: str) -> str:
    """The MessageHub key of statistic ``name`` in loop stage ``stage``.

    mmengine's LogProcessor strips the first ``'{stage}/'`` of a key, so the statistic shows as
    ``'{stage}/{name}'`` in the text log, ``scalars.json`` and TensorBoard: training and
    evaluation values of the same statistic stay apart.

    Example:
        >>> hub_key('val', 'deq_fwd_steps')
        'val/val/deq_fwd_steps'
    """
    return f'{stage}/{stage}/{name}'


def current_loop() -> Optional[Tuple[MessageHub, str]]:
    """The current MessageHub and its ``loop_stage`` ('train', 'val', 'test'), or None outside
    a Runner's loop (no MessageHub created yet, or no stage set)."""
    # MessageHub.get_current_instance() would create a hub if none exists
    if not MessageHub._instance_dict:
        return None
    hub = MessageHub.get_current_instance()
    stage = hub.get_info('loop_stage')
    if stage != 'train' and stage not in EVAL_STAGES:
        return None
    return hub, stage


class SolverStatsReporter:
    """Writes an MDEQ's solver statistics to the running loop's MessageHub, and warns when the
    forward solve stops converging.

    Training (``loop_stage == 'train'``, module in training mode): after each forward
    ``train/deq_nonfinite_inputs`` (fraction of images with NaN/Inf values) and, at
    equilibrium, ``train/deq_fwd_steps``, ``train/deq_fwd_rel_res`` and
    ``train/deq_fwd_fallbacks`` (fraction of samples whose forward solve hit NaN/Inf or
    diverged); after an implicit backward ``train/deq_bwd_steps``, ``train/deq_bwd_rel_res`` and
    ``train/deq_bwd_unconverged`` (fraction that missed the backward tolerance). Each value is
    the mean over the last ``window`` iterations that had it (batch means of this rank),
    like mmengine's smoothed losses.

    Evaluation (``'val'`` / ``'test'``, module in eval mode): ``{stage}/deq_fwd_steps``,
    ``deq_fwd_rel_res``, ``deq_fwd_fallbacks`` and ``deq_nonfinite_inputs`` as the mean over
    every sample solved since the evaluation began (:meth:`reset_eval`; the backbone calls it
    in ``eval()``, which mmengine's val and test loops call first). These are this rank's
    samples; :class:`~mdeq_mm.engine.hooks.DEQSolverStatsHook` replaces them by the mean over
    all ranks at the end of the evaluation (:meth:`eval_sums`, :meth:`publish_eval`).

    The warning: when the forward relative residual of every one of ``warn_window``
    consecutive equilibrium iterations is above ``warn_threshold``. Repeated unconverged
    windows warn with exponential back-off (windows 1, 3, 6, 11, ...: the gap doubles), and a
    converged window resets it. Unrolled iterations have no forward solve and never warn.

    Args:
        window (int): Training iterations of the smoothing window. Defaults to 10.
        warn_threshold (float, optional): Relative residual regarded as "not converged"; None
            disables the warning. Defaults to 0.05.
        warn_window (int, optional): Iterations of a warning window; None uses ``window``.

    Example:
        >>> import torch
        >>> reporter = SolverStatsReporter(window=2)
        >>> sums = torch.tensor([10., 0.2, 0., 0., 2.], dtype=torch.float64)
        >>> hub = MessageHub('reporter_doc')
        >>> reporter.publish_eval(hub, 'val', sums)
        >>> float(hub.get_scalar('val/val/deq_fwd_steps').current())
        5.0
    """

    def __init__(self,
                 window: int = DEFAULT_WINDOW,
                 warn_threshold: Optional[float] = DEFAULT_WARN_THRESHOLD,
                 warn_window: Optional[int] = None) -> None:
        self.configure(window, warn_threshold, warn_window)
        self._eval_stage: Optional[str] = None
        self._eval_sums: Optional[Tensor] = None

    def configure(self,
                  window: int,
                  warn_threshold: Optional[float] = DEFAULT_WARN_THRESHOLD,
                  warn_window: Optional[int] = None) -> None:
        """Set the smoothing and warning windows and the threshold; restarts both windows."""
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f'window must be an int >= 1, got {window!r}')
        self.window = window
        self.warn_threshold = warn_threshold
        self.warn_window = warn_window or window
        self._train: Dict[str, Deque[float]] = {key: deque(maxlen=window) for key in TRAIN_KEYS}
        self._unconverged: List[float] = []
        self._windows_to_skip = 0
        self._gap = 1

    def report_forward(self, training: bool, nonfinite: Tensor,
                       stats: Optional[SolverStats]) -> None:
        """Statistics of one forward: ``(B,)`` NaN/Inf image mask and the forward solve's
        statistics (None in unrolled mode)."""
        loop = current_loop()
        if loop is None:
            return
        hub, stage = loop
        if training and stage == 'train':
            values = {NONFINITE_INPUTS: nonfinite.float().mean()}
            if stats is not None:
                values[FWD_STEPS] = stats.steps.float().mean()
                values[FWD_REL_RES] = stats.rel_res.float().mean()
                values[FWD_FALLBACKS] = stats.failed.float().mean()
            means = self._push_train(hub, values)
            if stats is not None:
                self._check_convergence(means[FWD_REL_RES])
        elif not training and stage in EVAL_STAGES and stats is not None:
            self._add_eval(hub, stage, nonfinite, stats)

    def report_backward(self, stats: Optional[SolverStats]) -> None:
        """Statistics of one implicit backward solve (None: no implicit backward ran)."""
        loop = current_loop()
        if loop is None or stats is None or loop[1] != 'train':
            return
        self._push_train(loop[0], {
            BWD_STEPS: stats.steps.float().mean(),
            BWD_REL_RES: stats.rel_res.float().mean(),
            BWD_UNCONVERGED: (~stats.converged | stats.failed).float().mean(),
        })

    def _push_train(self, hub: MessageHub, values: Dict[str, Tensor]) -> Dict[str, float]:
        """Batch means into the windows and the window means into the hub; returns the batch
        means as numbers (one host sync)."""
        batch_means = dict(zip(values, torch.stack(list(values.values())).tolist()))
        for key, value in batch_means.items():
            history = self._train[key]
            history.append(value)
            hub.update_scalar(hub_key('train', key), sum(history) / len(history))
        return batch_means

    def _check_convergence(self, rel_res: float) -> None:
        """Warn, with back-off, when a whole window's residuals stayed above the threshold."""
        if self.warn_threshold is None:
            return
        self._unconverged.append(rel_res)
        if len(self._unconverged) < self.warn_window:
            return
        window, self._unconverged = self._unconverged, []
        if min(window) <= self.warn_threshold:
            self._windows_to_skip, self._gap = 0, 1
            return
        if self._windows_to_skip:
            self._windows_to_skip -= 1
            return
        print_log(
            f'DEQ forward solver not converging: relative residual above '
            f'{self.warn_threshold} for the last {len(window)} equilibrium iterations: mean '
            f'{sum(window) / len(window):.4g}, min {min(window):.4g}, max {max(window):.4g}. '
            'Consider a larger forward max_iter, Jacobian regularization (JacobianRegHook) or a '
            f'lower learning rate. (Next warning after {self._gap} more such window(s).)',
            logger='current', level=logging.WARNING)
        self._windows_to_skip, self._gap = self._gap, 2 * self._gap

    def reset_eval(self) -> None:
        """Start a new evaluation: forget the sums of the previous one."""
        self._eval_stage, self._eval_sums = None, None

    def _add_eval(self, hub: MessageHub, stage: str, nonfinite: Tensor,
                  stats: SolverStats) -> None:
        sums = torch.stack([  # EVAL_KEYS' totals, then the number of samples
            stats.steps.double().sum(),
            stats.rel_res.double().sum(),
            stats.failed.double().sum(),
            nonfinite.double().sum(),
            stats.steps.new_tensor(stats.steps.numel(), dtype=torch.float64),
        ]).cpu()
        if self._eval_stage != stage or self._eval_sums is None:
            self._eval_stage, self._eval_sums = stage, sums
        else:
            self._eval_sums += sums
        self.publish_eval(hub, stage, self._eval_sums)

    def eval_sums(self, stage: str) -> Tensor:
        """``EVAL_KEYS``' totals and the sample count of this evaluation (zeros if none)."""
        if self._eval_stage == stage and self._eval_sums is not None:
            return self._eval_sums.clone()
        return torch.zeros(len(EVAL_KEYS) + 1, dtype=torch.float64)

    @staticmethod
    def publish_eval(hub: MessageHub, stage: str, sums: Tensor) -> None:
        """The means of :meth:`eval_sums`-like totals into the hub (nothing for no samples)."""
        *totals, samples = sums.tolist()
        if samples == 0:
            return
        for key, total in zip(EVAL_KEYS, totals):
            hub.update_scalar(hub_key(stage, key), total / samples)
