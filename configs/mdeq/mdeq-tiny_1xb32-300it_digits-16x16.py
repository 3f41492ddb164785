# MDEQ-tiny on scikit-learn's real handwritten digits: the small-data recipe. Half of the run
# unrolled (one run each: switching to equilibrium after 60 of 300 iterations gave 80.0% top-1
# at iteration 100, still unrolled after 200 of 600 gave 87.6%), no dropout in a short run.
_base_ = [
    '../_base_/models/mdeq-tiny_cifar.py',
    '../_base_/datasets/digits_bs32.py', '../_base_/schedules/digits_adam_300it.py',
    'mmpretrain::_base_/default_runtime.py', '../_base_/mdeq_runtime.py'
]
model = dict(backbone=dict(dropout=0.0))
randomness = dict(seed=0)
# iteration-based: log validation metrics by iteration, checkpoint once at the end
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', interval=300, by_epoch=False))
optim_wrapper = dict(type='SkipNonFiniteOptimWrapper')
