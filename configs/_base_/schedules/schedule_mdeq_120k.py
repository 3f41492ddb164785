# The paper's Cityscapes schedule: SGD 0.9, lr 0.01, poly decay, 120k iterations; the first 50k
# iterations train the unrolled weight-tied network (warm-up), then implicit training.
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005)
optim_wrapper = dict(type='SkipNonFiniteOptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=120000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=120000, val_interval=12000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=12000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_ratio=5 / 12),
    dict(type='DEQSolverStatsHook', warn_threshold=0.05),
]
