# MDEQ-small + FCN resize-concat head (the authors' segmentation head) for Cityscapes.
# Cityscapes settings of the paper: 27 forward / 30 backward Broyden steps, 3 unrolled layers
# during warm-up, variational dropout 0.05, GroupNorm (8 groups) inside f.
norm_cfg = dict(type='SyncBN', requires_grad=True)
num_channels = (32, 64, 128, 256)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    test_cfg=dict(size_divisor=32))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='MDEQ',
        arch='small',
        dropout=0.05,
        norm_cfg=norm_cfg,
        forward_solver=dict(type='broyden', max_iter=27, tol=1e-3, stop_mode='rel'),
        backward=dict(type='implicit', solver='broyden', max_iter=30, tol=1e-3),
        unrolled_layers=3),
    decode_head=dict(
        type='FCNHead',
        in_channels=list(num_channels),
        in_index=(0, 1, 2, 3),
        channels=sum(num_channels),
        input_transform='resize_concat',
        kernel_size=1,
        num_convs=1,
        concat_input=False,
        dropout_ratio=-1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
