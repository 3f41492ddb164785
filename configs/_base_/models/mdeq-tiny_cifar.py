# MDEQ-tiny for 32x32-class images: 2 branches of 24 channels at stride 1 and 2, the stem output
# injected directly, 18/20 solver steps, 10 unrolled warm-up layers, dropout 0.25.
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
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        # nn.Linear's own init, as in the authors' classifier (mmpretrain's default is N(0, 0.01))
        init_cfg=None))
