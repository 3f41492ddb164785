# MDEQ-tiny on CIFAR-10 (the authors' CIFAR-tiny settings; see ../_base_/models/mdeq-tiny_cifar.py).
_base_ = [
    '../_base_/models/mdeq-tiny_cifar.py', 'mmpretrain::_base_/datasets/cifar10_bs16.py',
    '../_base_/schedules/cifar10_adam_50e.py', 'mmpretrain::_base_/default_runtime.py',
    '../_base_/mdeq_runtime.py'
]
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
optim_wrapper = dict(type='SkipNonFiniteOptimWrapper')
# about 8 of 50 epochs unrolled, as in the authors' schedule
custom_hooks = [dict(type='DEQWarmupHook', warmup_ratio=0.15), *_base_.custom_hooks[1:]]
