"""Optional extras on top of the solver statistics the MDEQ backbone logs itself."""
from typing import Any, Dict, Optional, Tuple

from mmengine.dist import all_reduce
from mmengine.hooks import LoggerHook
from mmengine.registry import HOOKS
from torch import nn

from mdeq_mm.deq.checks import check_int, check_number
from mdeq_mm.models.backbones.solver_stats_reporter import DEFAULT_WARN_THRESHOLD
from .mdeq_hook import MDEQHook, forward_mode

FAILED_FLAG = 'deq_failed'


@HOOKS.register_module()
class DEQSolverStatsHook(MDEQHook):
    """Evaluation statistics over all ranks, per-sample flags, and the logging window of the
    solver statistics that the MDEQ backbone reports.

    The backbone logs ``train/deq_*`` and ``val/deq_*`` / ``test/deq_*`` itself, without any
    hook (see :class:`~mdeq_mm.models.backbones.solver_stats_reporter.SolverStatsReporter`).
    This hook adds:

    - the training statistics as means over the LoggerHook interval (instead of mmengine's
      default window of 10 iterations), and the convergence warning with ``warn_threshold``
      over windows of ``warn_window`` equilibrium iterations (default: the interval);
    - ``val/`` (``test/``) statistics as the mean over all samples of all ranks, written
      before the LoggerHook writes the epoch log (without it: this rank's samples), and a
      warning if any sample had NaN/Inf values or a failed forward solve;
    - ``deq_failed`` in the metainfo of every predicted data sample (the backbone's
      :attr:`~mdeq_mm.models.MDEQ.last_failed`: NaN/Inf image, or forward solve hit NaN/Inf or
      diverged), set by a forward hook on the data model so that metrics, ``--out`` and
      visualizers see it. It reads the backbone after each batch (whole-image inference; with
      sliding windows, the last window).

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
                 warn_threshold: Optional[float] = DEFAULT_WARN_THRESHOLD,
                 warn_window: Optional[int] = None) -> None:
        name = type(self).__name__
        if warn_threshold is not None:
            check_number(f'{name} warn_threshold', warn_threshold, 0.0)
        if warn_window is not None:
            check_int(f'{name} warn_window', warn_window, 1)
        self.warn_threshold = warn_threshold
        self.warn_window = warn_window

    def before_run(self, runner) -> None:
        """Find the backbone, flag predictions, and set the backbone's logging windows."""
        super().before_run(runner)
        self.hook_model_forward(runner, self._flag_predictions)
        interval = next((hook.interval for hook in runner.hooks if isinstance(hook, LoggerHook)),
                        runner.log_processor.window_size)
        self.backbone.stats_reporter.configure(interval, self.warn_threshold,
                                               self.warn_window or interval)

    # mmengine's Hook hands after_val_epoch and after_test_epoch to this method with the
    # loop's mode; this hook runs before the LoggerHook (priority BELOW_NORMAL).
    def _after_epoch(self, runner, mode: str = 'train') -> None:
        if mode == 'train':
            return
        reporter = self.backbone.stats_reporter
        sums = reporter.eval_sums(mode)
        all_reduce(sums, op='sum')  # every rank joins, also one without samples
        reporter.publish_eval(runner.message_hub, mode, sums)
        *_, failed, nonfinite, samples = sums.tolist()
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
