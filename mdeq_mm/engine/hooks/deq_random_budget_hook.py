"""A forward solver budget drawn anew for every training iteration."""
from mmengine.hooks.hook import DATA_BATCH
from mmengine.registry import HOOKS

from mdeq_mm.deq.checks import check_int
from .mdeq_hook import MDEQHook, iteration_rng

BUDGET_KEY = 'train/deq_budget'


@HOOKS.register_module()
class DEQRandomBudgetHook(MDEQHook):
    """Train the MDEQ with a forward budget drawn per iteration around the configured one.

    Before every training iteration the backbone's training budget (``deq.train_max_iter``)
    is set to ``max_iter + d`` with ``d`` drawn uniformly from ``[-delta, delta]`` (at least 1
    step), where ``max_iter`` is the backbone's ``forward_solver`` budget; so the layer learns
    to give usable features after fewer or more solver steps (the authors' MDEQ-Vision code
    does this with ``RAND_F_THRES_DELTA``). The draw at iteration ``i`` comes from
    ``np.random.default_rng((seed, i))``: the same on every rank without communication, and a
    resumed run repeats it. Validation and testing keep their own budget (``eval_max_iter``).
    The drawn budget is logged as ``train/deq_budget``.

    Args:
        delta (int): Largest change of the budget, in f evaluations (>= 0).
        seed (int): Seed of the per-iteration draw. Defaults to 0.

    Example:
        >>> custom_hooks = [dict(type='DEQRandomBudgetHook', delta=2)]
    """

    priority = 'NORMAL'

    def __init__(self, delta: int, seed: int = 0) -> None:
        name = type(self).__name__
        check_int(f'{name} delta', delta, 0)
        check_int(f'{name} seed', seed, 0)
        self.delta = delta
        self.seed = seed

    def budget_at(self, iteration: int) -> int:
        """The training budget of ``iteration``."""
        draw = iteration_rng(self.seed, iteration).integers(-self.delta, self.delta + 1)
        return max(1, self.backbone.deq.forward_cfg.max_iter + int(draw))

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        """Draw this iteration's budget."""
        budget = self.budget_at(runner.iter)
        self.backbone.deq.train_max_iter = budget
        runner.message_hub.update_scalar(BUDGET_KEY, budget)

    def after_train(self, runner) -> None:
        """Give the backbone its configured budget back."""
        self.backbone.deq.train_max_iter = None
