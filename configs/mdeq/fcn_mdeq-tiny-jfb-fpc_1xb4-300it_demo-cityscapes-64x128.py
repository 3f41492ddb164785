# The quick-start job (tiny MDEQ, generated street scenes) with the `-jfb-fpc` training recipe
# (README, "Which recipe"; measured on the real frame and the digits, not on this data set): no
# unrolled warm-up, Jacobian-free backprop, Anderson acceleration in place of Broyden (training
# and evaluation), half the forward budget in training (6 of 12 steps; evaluation keeps 12) and
# fixed-point correction of 1 state of the solve (weight 0.8).
_base_ = './fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py'
model = dict(
    backbone=dict(
        backward=dict(_delete_=True, type='jfb'),
        forward_solver=dict(type='anderson', max_iter=6),
        eval_max_iter=12))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=0), *_base_.custom_hooks[1:],
    dict(type='FixedPointCorrectionHook', n_states=1, gamma=0.8)
]
