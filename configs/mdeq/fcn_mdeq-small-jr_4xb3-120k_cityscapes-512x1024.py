# MDEQ-small with Jacobian regularization (Bai et al., ICML 2021), the paper's ImageNet recipe
# (./mdeq-small-jr_4xb32_in1k.py) on Cityscapes: 14/14 solver steps, dropout 0.02, the
# Frobenius-norm penalty on 8% of the iterations, weight 2.5 ramping +0.1 every 12k iterations.
_base_ = './fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py'
model = dict(
    backbone=dict(dropout=0.02, forward_solver=dict(max_iter=14), backward=dict(max_iter=14)))
jacobian_reg = dict(
    type='JacobianRegHook', weight=2.5, prob=0.08, ramp_step=0.1, ramp_interval=_base_.interval)
custom_hooks = [*_base_.custom_hooks, jacobian_reg]
