"""The generated street scenes load through mmseg's stock CityscapesDataset."""
import numpy as np
import pytest
from mmseg.datasets import CityscapesDataset
from mmseg.utils import register_all_modules

from mdeq_mm.datasets import (SYNTHETIC_CLASSES, generate_cityscapes_like,
                              render_street_scene)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return generate_cityscapes_like(
        str(tmp_path_factory.mktemp('synth')), num_train=3, num_val=2, height=64, width=128)


def test_stock_cityscapes_dataset_reads_generated_files(data_root):
    register_all_modules()
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')]
    dataset = CityscapesDataset(
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=pipeline)
    assert len(dataset) == 3
    sample = dataset[0]
    assert tuple(sample['inputs'].shape) == (3, 64, 128)
    labels = set(np.unique(sample['data_samples'].gt_sem_seg.data.numpy()).tolist())
    assert labels <= {tid for tid, _ in SYNTHETIC_CLASSES.values()}
    assert len(labels) >= 4


def test_scenes_have_spatial_structure():
    sky, road = SYNTHETIC_CLASSES['sky'][0], SYNTHETIC_CLASSES['road'][0]
    rng = np.random.default_rng(1)
    for _ in range(5):
        _, label = render_street_scene(rng, 96, 192)
        rows = np.arange(96)[:, None].repeat(192, axis=1)
        assert rows[label == sky].mean() < rows[label == road].mean()


def test_same_seed_same_data(tmp_path):
    a = generate_cityscapes_like(str(tmp_path / 'a'), 1, 1, 32, 64, seed=3)
    b = generate_cityscapes_like(str(tmp_path / 'b'), 1, 1, 32, 64, seed=3)
    name = 'leftImg8bit/val/synthcity/synthcity_val00_000000_leftImg8bit.png'
    assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
    assert a != b


def test_images_smaller_than_16_pixels_are_refused(tmp_path):
    with pytest.raises(ValueError, match='height, width >= 16'):
        generate_cityscapes_like(str(tmp_path), 1, 1, 8, 64)
