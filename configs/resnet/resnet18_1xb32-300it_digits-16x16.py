# mmpretrain's CIFAR ResNet-18 on the same real digits and schedule: the plain baseline of
# configs/mdeq/mdeq-tiny_1xb32-300it_digits-16x16.py.
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py', '../_base_/datasets/digits_bs32.py',
    '../_base_/schedules/digits_adam_300it.py', 'mmpretrain::_base_/default_runtime.py'
]
randomness = dict(seed=0)
# iteration-based: log validation metrics by iteration, checkpoint once at the end
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', interval=300, by_epoch=False))
