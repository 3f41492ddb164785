# MDEQ-small with Jacobian regularization (paper: 74.5% top-1 with 14 solver steps): 14/14
# steps, dropout 0.02, the penalty on 8% of the iterations, gamma 2.5 ramping +0.1 every epoch.
_base_ = './mdeq-small_4xb32_in1k.py'
model = dict(
    backbone=dict(dropout=0.02, forward_solver=dict(max_iter=14), backward=dict(max_iter=14)))
jacobian_reg = dict(type='JacobianRegHook', weight=2.5, prob=0.08, ramp_step=0.1,
                    ramp_interval=_base_.iters_per_epoch)
custom_hooks = [*_base_.custom_hooks, jacobian_reg]
