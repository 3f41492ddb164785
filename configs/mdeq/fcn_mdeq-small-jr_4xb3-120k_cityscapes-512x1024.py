# MDEQ-small with Jacobian regularization (Bai et al., ICML 2021): fewer solver steps (14/14),
# the Frobenius-norm penalty on 8% of the iterations with weight 2.5 ramping up by 0.1.
_base_ = './fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py'
model = dict(
    backbone=dict(
        dropout=0.02,
        forward_solver=dict(max_iter=14),
        backward=dict(max_iter=14)))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_ratio=5 / 12),
    dict(type='DEQSolverStatsHook', warn_threshold=0.05),
    dict(type='JacobianRegHook', weight=2.5, prob=0.08, ramp_step=0.1, ramp_interval=12000),
]
