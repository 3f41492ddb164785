# MDEQ-tiny on scikit-learn's real handwritten digits: the small-data recipe.
_base_ = [
    '../_base_/mdeq_runtime.py', '../_base_/models/mdeq-tiny_cifar.py',
    '../_base_/datasets/digits_bs32.py', '../_base_/schedules/digits_adam_600it.py',
    'mmpretrain::_base_/default_runtime.py'
]
model = dict(backbone=dict(dropout=0.0))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=600, by_epoch=False))
optim_wrapper = dict(type='SkipNonFiniteOptimWrapper')
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=200),
    dict(type='DEQSolverStatsHook', warn_threshold=0.05),
]
