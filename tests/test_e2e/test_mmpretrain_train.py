"""mmpretrain end to end: a CustomDataset folder -> MDEQ + MDEQClsNeck -> Accuracy."""
import json
import os.path as osp

import numpy as np
import pytest
from mmengine.runner import Runner


pytestmark = pytest.mark.slow


def test_classifier_trains_and_validates(tmp_path, cls_config):
    runner = Runner.from_cfg(cls_config(str(tmp_path)))
    runner.train()
    scalars = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    records = [json.loads(line) for line in open(scalars)]
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    accuracy = [r['accuracy/top1'] for r in records if 'accuracy/top1' in r]
    assert accuracy and 0.0 <= accuracy[-1] <= 100.0
