# MDEQ-small on the real frame with the fixed-point-correction recipe
# (./fcn_mdeq-tiny-fpc_1xb2-120it_cityscapes-frame-128x256.py): no unrolled warm-up, the phantom
# gradient (5 damped steps, tau 0.6), the decode head's loss also on 2 states of the forward solve
# weighted 0.64 and 0.8. Seed 0, mIoU @20...@120: 44.7 / 51.1 / 55.2 / 62.3 / 66.6 / 68.0.
_base_ = './fcn_mdeq-small_1xb2-120it_cityscapes-frame-128x256.py'
model = dict(backbone=dict(backward=dict(_delete_=True, type='phantom', k=5, tau=0.6)))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=0), *_base_.custom_hooks[1:],
    dict(type='FixedPointCorrectionHook', n_states=2, gamma=0.8)
]
