"""MMEngine hooks that make an MDEQ trainable and observable in a stock Runner (and one that
validates the initial weights, for learning curves)."""
from .deq_eval_budget_hook import DEQEvalBudgetHook
from .deq_random_budget_hook import DEQRandomBudgetHook
from .deq_solver_stats_hook import DEQSolverStatsHook
from .deq_warmup_hook import DEQWarmupHook
from .fixed_point_correction_hook import FixedPointCorrectionHook
from .initializer_training_hook import InitializerTrainingHook
from .jacobian_reg_hook import JacobianRegHook
from .mdeq_hook import MDEQHook, get_mdeq_backbone, unwrap_model
from .validate_before_train_hook import ValidateBeforeTrainHook

__all__ = [
    'DEQEvalBudgetHook', 'DEQRandomBudgetHook', 'DEQSolverStatsHook', 'DEQWarmupHook',
    'FixedPointCorrectionHook', 'InitializerTrainingHook', 'JacobianRegHook', 'MDEQHook',
    'ValidateBeforeTrainHook', 'get_mdeq_backbone', 'unwrap_model'
]
