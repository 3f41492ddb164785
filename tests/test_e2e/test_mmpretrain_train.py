"""mmpretrain end to end: a CustomDataset folder -> MDEQ + MDEQClsNeck -> Accuracy."""
import json
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

pytestmark = pytest.mark.slow
def classification_config(data_root, work_dir):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

    def loader(split, shuffle):
        return dict(
            batch_size=8, num_workers=0, persistent_workers=False,
            sampler=dict(type='DefaultSampler', shuffle=shuffle),
            dataset=dict(type='CustomDataset', data_root=data_root, data_prefix=split,
                         pipeline=pipeline))

    return Config(dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['mdeq_mm'], allow_failed_imports=False),
        work_dir=work_dir,
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(num_classes=3, mean=[127.5] * 3, std=[64.] * 3,
                                   to_rgb=True),
            backbone=dict(type='MDEQ', arch=dict(num_channels=(8, 16), expansion=2,
                                                 stem_stride=2),
                          forward_solver=dict(type='broyden', max_iter=6),
                          backward=dict(type='implicit', solver='broyden', max_iter=6),
                          unrolled_layers=3),
            neck=dict(type='MDEQClsNeck', in_channels=(8, 16), head_channels=(4, 8),
                      final_channels=32),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=32,
                      loss=dict(type='CrossEntropyLoss'))),
        train_dataloader=loader('train', True),
        val_dataloader=loader('val', False),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=0.005)),
        train_cfg=dict(by_epoch=True, max_epochs=5, val_interval=5),
        val_cfg=dict(),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=2)),
        log_processor=dict(by_epoch=True),
        randomness=dict(seed=0)))


def test_classifier_trains_and_validates(tmp_path, cls_data_root):
    runner = Runner.from_cfg(classification_config(cls_data_root, str(tmp_path)))
    runner.train()
    scalars = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    records = [json.loads(line) for line in open(scalars)]
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    accuracy = [r['accuracy/top1'] for r in records if 'accuracy/top1' in r]
    assert accuracy and 0.0 <= accuracy[-1] <= 100.0
