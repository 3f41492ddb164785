# MDEQ-XL on Cityscapes with the `-jfb-fpc` training recipe (README, "Which recipe"; measured
# on the real frame and the digits, not on this data set; the recommended `-jfb-fpc-jr` adds
# Jacobian regularization from the middle of the run): no unrolled warm-up, Jacobian-free backprop,
# Anderson acceleration in place of Broyden (training and evaluation), half the forward budget in
# training (14 of 27 steps; evaluation keeps 27) and fixed-point correction of 1 state of the solve
# (weight 0.8).
_base_ = './fcn_mdeq-xl_4xb3-120k_cityscapes-768x1024.py'
model = dict(
    backbone=dict(
        backward=dict(_delete_=True, type='jfb'),
        forward_solver=dict(type='anderson', max_iter=14),
        eval_max_iter=27))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=0), *_base_.custom_hooks[1:],
    dict(type='FixedPointCorrectionHook', n_states=1, gamma=0.8)
]
