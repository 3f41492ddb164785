"""tools/test.py and MMSegInferencer on a trained checkpoint; cls -> seg initialization."""
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope


pytestmark = pytest.mark.slow


def test_test_tool_and_mmseg_inferencer_on_a_trained_checkpoint(tmp_path, seg_config, run_tool):
    from mmseg.apis import MMSegInferencer
    config = seg_config(tmp_path / 'cfg.py', max_iters=12)
    run_tool(['tools/train.py', config, '--work-dir', str(tmp_path / 'work')])

    inferencer = MMSegInferencer(model=config, weights=str(tmp_path / 'work' / 'iter_12.pth'),
                                 device='cpu')
    image = np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    result = inferencer(image, return_datasamples=False)
    mask = np.asarray(result['predictions'])
    assert mask.shape == (64, 128)
    assert mask.min() >= 0 and mask.max() < 19

    out = tmp_path / 'preds.pkl'
    tested = run_tool(['tools/test.py', config, str(tmp_path / 'work' / 'iter_12.pth'),
                       '--work-dir', str(tmp_path / 'test'), '--out', str(out)])
    assert re.search(r'mIoU: [0-9.]+', tested), tested[-3000:]
    assert out.exists()


def test_classification_checkpoint_initializes_segmentation_backbone(tmp_path):
    from mmpretrain.registry import MODELS as CLS_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    arch = dict(num_channels=(8, 16), expansion=2)
    init_default_scope('mmpretrain')
    classifier = CLS_MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='MDEQ', arch=arch),
        neck=dict(type='MDEQClsNeck', in_channels=(8, 16), head_channels=(4, 8),
                  final_channels=32),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=32)))
    for p in classifier.parameters():
        torch.nn.init.normal_(p)
    torch.save(dict(state_dict=classifier.state_dict(), meta=dict()), tmp_path / 'cls.pth')

    init_default_scope('mmseg')
    segmentor = SEG_MODELS.build(Config(dict(
        type='EncoderDecoder',
        backbone=dict(type='MDEQ', arch=arch, init_cfg=dict(
            type='Pretrained', checkpoint=str(tmp_path / 'cls.pth'), prefix='backbone.')),
        decode_head=dict(type='FCNHead', in_channels=[8, 16], in_index=(0, 1), channels=24,
                         input_transform='resize_concat', kernel_size=1, num_convs=1,
                         concat_input=False, num_classes=3))).to_dict())
    segmentor.init_weights()
    cls_state = classifier.backbone.state_dict()
    seg_state = segmentor.backbone.state_dict()
    assert cls_state.keys() == seg_state.keys()
    for key, value in cls_state.items():
        torch.testing.assert_close(seg_state[key], value, msg=key)
