"""A head left with another backbone's in_channels is named at build time, with what to write."""
import pytest
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mdeq_mm.models.head_channels import HeadChannelsError, check_head_channels

TINY = dict(type='MDEQ', arch=dict(num_channels=(8, 16), expansion=2))


def build(tmp_path, text, scope):
    """The model of a config file holding ``text`` (e.g. a stock base and overrides)."""
    path = tmp_path / 'cfg.py'
    path.write_text(text)
    init_default_scope(scope)
    return MODELS.build(Config.fromfile(str(path)).model)


def test_stock_fcn_hrnet_head_left_at_270_channels_is_named_with_the_480_mdeq_gives(tmp_path):
    model = build(tmp_path, """
_base_ = 'mmseg::hrnet/fcn_hr18_4xb2-40k_cityscapes-512x1024.py'
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(pretrained=None, backbone=dict(_delete_=True, type='MDEQ', arch='small'),
             decode_head=dict(norm_cfg=norm_cfg))
""", 'mmseg')
    with pytest.raises(HeadChannelsError) as err:
        check_head_channels(model)
    message = str(err.value)
    assert 'model.decode_head (FCNHead) takes 270 channels, but the MDEQ backbone gives 480' \
        in message
    assert '(32, 64, 128, 256)' in message and '32 + 64 + 128 + 256 = 480' in message
    assert message.endswith('Write model.decode_head.in_channels=[32, 64, 128, 256]')


def test_in_index_beyond_the_branches_is_named(tmp_path):
    model = build(tmp_path, f"""
_base_ = 'mmseg::_base_/models/fcn_hr18.py'
model = dict(pretrained=None, backbone=dict(_delete_=True, **{TINY!r}),
             decode_head=dict(norm_cfg=dict(type='BN')))
""", 'mmseg')
    with pytest.raises(HeadChannelsError, match=r'in_index=\(0, 1, 2, 3\).* 2 branches of '
                       r'\(8, 16\) channels: pick indices in 0\.\.1'):
        check_head_channels(model)


def test_single_branch_head_and_auxiliary_heads_are_checked(tmp_path):
    model = build(tmp_path, f"""
_base_ = 'mmseg::_base_/models/fcn_hr18.py'
norm_cfg = dict(type='BN')
model = dict(pretrained=None, backbone=dict(_delete_=True, **{TINY!r}),
             decode_head=dict(_delete_=True, type='FCNHead', in_channels=16, in_index=1,
                              channels=8, num_classes=3, norm_cfg=norm_cfg),
             auxiliary_head=[dict(type='FCNHead', in_channels=16, in_index=0, channels=8,
                                  num_classes=3, norm_cfg=norm_cfg)])
""", 'mmseg')
    with pytest.raises(HeadChannelsError) as err:
        check_head_channels(model)
    assert str(err.value) == (
        'model.auxiliary_head[0] (FCNHead) takes in_channels=16, but the MDEQ backbone gives 8 '
        'at in_index=0 (its branches have (8, 16) channels). Write '
        'model.auxiliary_head[0].in_channels=8')


def test_fitting_heads_pass(tmp_path, demo_config):
    init_default_scope('mmseg')
    check_head_channels(MODELS.build(Config.fromfile(demo_config).model))


CLS_MODEL = """
model = dict(type='ImageClassifier', backbone={backbone!r}, neck={neck},
             head=dict(type='LinearClsHead', num_classes=3, in_channels={head_channels}))
"""


@pytest.mark.parametrize('neck, head_channels, message', [
    ("dict(type='MDEQClsNeck', in_channels=(8, 16), head_channels=(4, 8), final_channels=32)",
     2048, 'model.head (LinearClsHead) takes in_channels=2048, but model.neck (MDEQClsNeck) '
     'gives final_channels=32. Write model.head.in_channels=32'),
    ("dict(type='MDEQClsNeck', in_channels=(18, 36), head_channels=(4, 8), final_channels=32)",
     32, 'model.neck (MDEQClsNeck) takes in_channels=(18, 36), but the MDEQ backbone gives '
     'branches of (8, 16) channels. Write model.neck.in_channels=(8, 16)'),
    ("dict(type='GlobalAveragePooling')", 512, 'model.head (LinearClsHead) takes '
     'in_channels=512, but the classifier head reads the last MDEQ branch, which has 16. Write '
     'model.head.in_channels=16'),
])
def test_classifier_head_and_neck_channels_are_named(tmp_path, neck, head_channels, message):
    model = build(tmp_path, CLS_MODEL.format(backbone=TINY, neck=neck,
                                             head_channels=head_channels), 'mmpretrain')
    with pytest.raises(HeadChannelsError) as err:
        check_head_channels(model)
    assert str(err.value) == message


@pytest.mark.parametrize('neck, head_channels', [
    ("dict(type='MDEQClsNeck', in_channels=(8, 16), head_channels=(4, 8), final_channels=32)",
     32),
    ("dict(type='GlobalAveragePooling')", 16),
    ("None", 16),
])
def test_fitting_classifiers_pass(tmp_path, neck, head_channels):
    check_head_channels(build(tmp_path, CLS_MODEL.format(
        backbone=TINY, neck=neck, head_channels=head_channels), 'mmpretrain'))
