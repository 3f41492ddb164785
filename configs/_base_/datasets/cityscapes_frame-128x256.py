# One real Cityscapes frame at 128x256 in the Cityscapes folder layout (val split only), for the
# learning benchmark: models train and are validated on the same frame, which measures how fast
# they learn, not how they generalize. Point data_root at it with --cfg-options.
_base_ = 'mmseg::_base_/datasets/cityscapes.py'
data_root = 'data/cityscapes_frame/'
crop_size = (128, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
frame = dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val')
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, data_prefix=frame, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, data_prefix=frame, pipeline=test_pipeline))
test_dataloader = val_dataloader
