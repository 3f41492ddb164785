# MDEQ-small trained by the demo recipe (unrolled warm-up, then implicit equilibrium training)
# on the generated street scenes, shortened to a few CPU minutes: the trained state at which
# the benchmark (tools/analysis_tools/benchmark.py) measures MDEQ.
_base_ = ['./fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py']
num_channels = (32, 64, 128, 256)
iters = 150
model = dict(
    data_preprocessor=dict(test_cfg=dict(size_divisor=32)),
    backbone=dict(arch='small'),
    decode_head=dict(
        in_channels=list(num_channels), in_index=(0, 1, 2, 3), channels=sum(num_channels)))
train_dataloader = dict(batch_size=2)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=iters, by_epoch=False)
]
train_cfg = dict(max_iters=iters, val_interval=iters)
default_hooks = dict(checkpoint=dict(interval=iters))
# two thirds unrolled, and no evaluation-budget hook
custom_hooks = [dict(type='DEQWarmupHook', warmup_ratio=2 / 3), _base_.custom_hooks[1]]
