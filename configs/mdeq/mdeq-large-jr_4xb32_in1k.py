# MDEQ-large with Jacobian regularization (paper: 76.8% top-1 with 15 solver steps).
_base_ = './mdeq-large_4xb32_in1k.py'
model = dict(
    backbone=dict(
        dropout=0.02, forward_solver=dict(max_iter=15), backward=dict(max_iter=15)))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_ratio=0.5),
    dict(type='DEQSolverStatsHook', warn_threshold=0.05),
    dict(type='JacobianRegHook', weight=2.5, prob=0.08, ramp_step=0.1, ramp_interval=10009),
]
