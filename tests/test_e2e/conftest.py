"""Fixtures of the end-to-end runs: generated data, the demo segmentor shrunk for a test run, a
tiny classifier."""
import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mdeq_mm.datasets import generate_cityscapes_like

# The demo config at half its resolution, without photometric distortion: 32x64 crops.
CROP = (32, 64)
HALF_RESOLUTION = {
    'RandomResize': dict(scale=(128, 64), ratio_range=(0.75, 1.25)),
    'RandomCrop': dict(crop_size=CROP),
    'Resize': dict(scale=(64, 32)),
}


@pytest.fixture(scope='session')
def seg_data_root(tmp_path_factory):
    return generate_cityscapes_like(
        str(tmp_path_factory.mktemp('synth_cityscapes')), num_train=8, num_val=2,
        height=64, width=128)


def half_resolution(pipeline):
    return [
        dict(step, **HALF_RESOLUTION.get(step['type'], {})) for step in pipeline
        if step['type'] != 'PhotoMetricDistortion'
    ]


@pytest.fixture(scope='session')
def seg_config(demo_config, seg_data_root):
    """``seg_config(path, max_iters, extra='')`` writes a config for a test run and returns its
    path: the demo config at half its resolution on :func:`seg_data_root`, ``max_iters``
    iterations, validation at the end, a checkpoint every 12; ``extra`` is config text merged
    over it."""

    def write(path, max_iters, extra=''):
        cfg = Config.fromfile(demo_config)
        train_pipeline = half_resolution(cfg.train_pipeline)
        test_pipeline = half_resolution(cfg.test_pipeline)
        cfg.merge_from_dict(dict(
            data_root=seg_data_root,
            crop_size=CROP,
            train_pipeline=train_pipeline,
            test_pipeline=test_pipeline,
            model=dict(data_preprocessor=dict(size=CROP)),
            train_dataloader=dict(dataset=dict(data_root=seg_data_root, pipeline=train_pipeline)),
            val_dataloader=dict(dataset=dict(data_root=seg_data_root, pipeline=test_pipeline)),
            test_dataloader=dict(dataset=dict(data_root=seg_data_root, pipeline=test_pipeline)),
            param_scheduler=[dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters,
                                  by_epoch=False)],
            train_cfg=dict(max_iters=max_iters, val_interval=max_iters),
            default_hooks=dict(logger=dict(interval=4), checkpoint=dict(interval=12))))
        base = path.with_name(f'{path.stem}_base.py')
        cfg.dump(str(base))
        path.write_text(f'_base_ = {str(base)!r}\n{extra}')
        return str(path)

    return write


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


@pytest.fixture(scope='session')
def cls_config(cls_data_root):
    """``cls_config(work_dir)``: a tiny MDEQ classifier on :func:`cls_data_root`'s folders."""
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

    def loader(split, shuffle):
        return dict(
            batch_size=8, num_workers=0, persistent_workers=False,
            sampler=dict(type='DefaultSampler', shuffle=shuffle),
            dataset=dict(type='CustomDataset', data_root=cls_data_root, data_prefix=split,
                         pipeline=pipeline))

    return lambda work_dir: Config(dict(
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
