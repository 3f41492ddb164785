# HRNet baseline with the MDEQ schedule (batch 4x3, 120k iterations), so that the comparison
# with ../mdeq/fcn_mdeq-*_4xb3-120k_cityscapes-512x1024.py is one command apart: mmseg's
# fcn_hr18_4xb2-80k_cityscapes-512x1024.py with ../_base_/schedules/schedule_120k.py.
_base_ = [
    'mmseg::_base_/models/fcn_hr18.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', '../_base_/schedules/schedule_120k.py'
]
crop_size = (512, 1024)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(batch_size=3)
