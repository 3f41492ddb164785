# MDEQ-XL on Cityscapes (88-176-352-704 channels, expansion 6, dropout 0.04, 768x1024 crops).
_base_ = './fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py'
num_channels = (88, 176, 352, 704)
crop_size = (768, 1024)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='xl', dropout=0.04),
    decode_head=dict(in_channels=list(num_channels), channels=sum(num_channels)))
# mmseg's Cityscapes training pipeline with 768x1024 crops
train_pipeline = [
    dict(step, crop_size=crop_size) if step.type == 'RandomCrop' else step
    for step in _base_.train_pipeline
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
