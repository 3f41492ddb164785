# Runtime pieces every MDEQ config shares: register mdeq_mm, and allow multi-process runs on
# CPU-only machines (gloo) while keeping the stock GPU behaviour.
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
runner_type = 'CPUDistributedRunner'
model_wrapper_cfg = dict(type='CPUDistributedDataParallel')
