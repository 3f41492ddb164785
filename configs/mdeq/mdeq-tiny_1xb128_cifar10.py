# MDEQ-tiny on CIFAR-10: 2 branches of 24 channels at stride 1 and 2, the stem output injected
# directly, 18/20 solver steps, 10 unrolled warm-up layers, dropout 0.25.
_base_ = [
    '../_base_/mdeq_runtime.py', 'mmpretrain::_base_/datasets/cifar10_bs16.py',
    'mmpretrain::_base_/default_runtime.py'
]
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MDEQ',
        arch='cifar-tiny',
        dropout=0.25,
        forward_solver=dict(type='broyden', max_iter=18, tol=1e-3),
        backward=dict(type='implicit', solver='broyden', max_iter=20, tol=1e-3),
        unrolled_layers=10),
    neck=dict(
        type='MDEQClsNeck', in_channels=(24, 24), head_channels=(8, 16), final_channels=200),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=200,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
optim_wrapper = dict(
    type='SkipNonFiniteOptimWrapper', optimizer=dict(type='Adam', lr=0.001, weight_decay=0.0))
param_scheduler = dict(type='CosineAnnealingLR', T_max=50, by_epoch=True, begin=0, end=50)
train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# about 8 of 50 epochs unrolled (391 iterations per epoch at batch 128)
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=3000),
    dict(type='DEQSolverStatsHook', warn_threshold=0.05),
]
