# HRNetV2-W18-Small baseline with the MDEQ schedule (batch 4x3, 120k iterations).
_base_ = [
    '../_base_/models/fcn_hr18s.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', '../_base_/schedules/schedule_120k.py'
]
model = dict(data_preprocessor=dict(size=(512, 1024)))
train_dataloader = dict(batch_size=3)
