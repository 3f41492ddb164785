# MDEQ-small on the real frame with the `-jfb-fpc` recipe (README, "Which recipe"; the recommended
# ./fcn_mdeq-small-jfb-fpc-jr_1xb2-120it_cityscapes-frame-128x256.py adds Jacobian regularization
# from the middle of the run on): no unrolled warm-up, Jacobian-free backprop, Anderson
# acceleration in place of Broyden (training and validation), half the forward budget in training
# (6 of the frame's 12 steps; validation keeps 12) and fixed-point correction of 1 state of the
# solve (step 3, weight 0.8). mIoU @20...@120, mean of seeds 0-2: 37.0 / 50.8 / 54.8 / 59.3 / 63.8
# / 64.8 (with Broyden 36.9 / 50.1 / 54.1 / 57.9 / 63.2 / 64.1; HRNet-W18 13.3 ... 55.3;
# docs/benchmarks.md), seed 0 64.2.
_base_ = './fcn_mdeq-small_1xb2-120it_cityscapes-frame-128x256.py'
model = dict(
    backbone=dict(
        backward=dict(_delete_=True, type='jfb'),
        forward_solver=dict(type='anderson', max_iter=6),
        eval_max_iter=12))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=0), *_base_.custom_hooks[1:],
    dict(type='FixedPointCorrectionHook', n_states=1, gamma=0.8)
]
