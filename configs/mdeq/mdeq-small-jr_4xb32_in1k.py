# MDEQ-small with Jacobian regularization (paper: 74.5% top-1 with 14 solver steps):
# 14/14 steps, gamma 2.5 ramping +0.1, applied on 8% of the iterations, dropout 0.02.
_base_ = './mdeq-small_4xb32_in1k.py'
model = dict(
    backbone=dict(
        dropout=0.02, forward_solver=dict(max_iter=14), backward=dict(max_iter=14)))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_ratio=0.5),
    dict(type='DEQSolverStatsHook', warn_threshold=0.05),
    dict(type='JacobianRegHook', weight=2.5, prob=0.08, ramp_step=0.1, ramp_interval=10009),
]
