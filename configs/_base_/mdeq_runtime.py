# Runtime pieces every MDEQ config shares: register mdeq_mm, allow multi-process runs on CPU-only
# machines (gloo) while keeping the stock GPU behaviour, and the DEQ hooks: unrolled weight-tied
# training for the first half of the run, then implicit; solver statistics in the log.
# The warm-up hook comes first, so that a task with another warm-up length replaces only it:
#   custom_hooks = [dict(type='DEQWarmupHook', warmup_ratio=5 / 12), *_base_.custom_hooks[1:]]
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
runner_type = 'CPUDistributedRunner'
model_wrapper_cfg = dict(type='CPUDistributedDataParallel')
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_ratio=0.5),
    dict(type='DEQSolverStatsHook', warn_threshold=0.05),
]
