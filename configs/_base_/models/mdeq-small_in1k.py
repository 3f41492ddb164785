# MDEQ-small classifier (the authors' ImageNet model): MDEQ backbone, HRNet-style incremental
# fusion neck (head channels 24-48-96-192, 2048 final channels) and a linear head.
# ImageNet settings of the paper: 26 forward / 27 backward Broyden steps, 5 unrolled layers.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MDEQ',
        arch='small',
        dropout=0.0,
        forward_solver=dict(type='broyden', max_iter=26, tol=1e-3, stop_mode='rel'),
        backward=dict(type='implicit', solver='broyden', max_iter=27, tol=1e-3),
        unrolled_layers=5),
    neck=dict(
        type='MDEQClsNeck',
        in_channels=(32, 64, 128, 256),
        head_channels=(24, 48, 96, 192),
        final_channels=2048),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        # nn.Linear's own init, as in the authors' classifier (mmpretrain's default is N(0, 0.01))
        init_cfg=None,
        topk=(1, 5)))
