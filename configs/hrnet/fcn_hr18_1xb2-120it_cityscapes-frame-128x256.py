# Learning benchmark, segmentation: HRNetV2-W18 (9.6M parameters, random init), the equal-size
# baseline of MDEQ-small (9.0M), with the same frame, schedule and seed as
# ../mdeq/fcn_mdeq-small_1xb2-120it_cityscapes-frame-128x256.py.
_base_ = [
    'mmseg::_base_/models/fcn_hr18.py', '../_base_/datasets/cityscapes_frame-128x256.py',
    '../_base_/schedules/frame_sgd_120it.py', 'mmseg::_base_/default_runtime.py'
]
model = dict(data_preprocessor=dict(size=(128, 256)), pretrained=None)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
