# MDEQ-tiny on CIFAR-10 with the recommended classification recipe (README, "Which recipe"; measured
# on the real digits, ./mdeq-tiny-fpc_1xb32-300it_digits-16x16.py, not on this data set): no
# unrolled warm-up, the phantom gradient (5 damped steps, tau 0.6) and fixed-point correction of 2
# states of the forward solve (weights 0.64 and 0.8).
# (The digits config also validates a 10-iteration moving average of the weights, which only a
# run of a few hundred iterations needs.)
_base_ = './mdeq-tiny_1xb128_cifar10.py'
model = dict(backbone=dict(backward=dict(_delete_=True, type='phantom', k=5, tau=0.6)))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=0), *_base_.custom_hooks[1:],
    dict(type='FixedPointCorrectionHook', n_states=2, gamma=0.8)
]
