# MDEQ-XL on Cityscapes (88-176-352-704 channels, expansion 6, dropout 0.04, 768x1024 crops).
_base_ = './fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py'
num_channels = (88, 176, 352, 704)
crop_size = (768, 1024)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='xl', dropout=0.04),
    decode_head=dict(in_channels=list(num_channels), channels=sum(num_channels)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
