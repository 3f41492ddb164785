"""Shared pieces of the end-to-end runs: generated data, tiny segmentation and classification
configs."""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mdeq_mm.datasets import generate_cityscapes_like

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(REPO, 'configs', 'mdeq',
                       'fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py')


@pytest.fixture(scope='session')
def seg_data_root(tmp_path_factory):
    return generate_cityscapes_like(
        str(tmp_path_factory.mktemp('synth_cityscapes')), num_train=8, num_val=2,
        height=64, width=128)


def write_seg_config(path, data_root, max_iters, extra=''):
    """A config inheriting the demo config, shrunk for a test run."""
    path.write_text(f"""
_base_ = {DEMO_CONFIG!r}
data_root = {data_root!r}
crop_size = (32, 64)
model = dict(data_preprocessor=dict(size=crop_size))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 32), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end={max_iters},
                        by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters}, val_interval={max_iters})
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=4, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=12))
{extra}
""")
    return str(path)


def run_tool(args, timeout=900, env=None, succeed=True):
    """Run a project tool with this interpreter; return its combined output. It must exit 0
    (``succeed=True``) or fail (``succeed=False``)."""
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    output = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == succeed, output[-5000:]
    return output


CLASSES = ('horizontal', 'vertical', 'checker')


def make_image(kind, rng):
    rows, cols = np.mgrid[0:32, 0:32]
    period = rng.integers(4, 9)
    pattern = {'horizontal': rows // period % 2, 'vertical': cols // period % 2,
               'checker': (rows // period + cols // period) % 2}[kind]
    colour = rng.integers(60, 255, size=3)
    image = pattern[..., None] * colour + rng.normal(0, 10, size=(32, 32, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope='session')
def cls_data_root(tmp_path_factory):
    """32x32 stripe and checker patterns in mmpretrain's CustomDataset folder layout."""
    root = tmp_path_factory.mktemp('patterns')
    rng = np.random.default_rng(0)
    for split, count in (('train', 16), ('val', 4)):
        for kind in CLASSES:
            (root / split / kind).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(make_image(kind, rng)).save(root / split / kind / f'{i}.png')
    return str(root)


def classification_config(data_root, work_dir):
    """A tiny MDEQ classifier on :func:`cls_data_root`'s folders."""
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
