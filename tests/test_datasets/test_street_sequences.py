"""Generated street-scene sequences: camera motion, moving cars, Cityscapes-layout labels."""
import os.path as osp

import numpy as np
import pytest
from mmseg.datasets import CityscapesDataset
from mmseg.utils import register_all_modules

from mdeq_mm.datasets import (SYNTHETIC_CLASSES, generate_cityscapes_sequences,
                              render_street_scene, render_street_sequence)


def test_consecutive_frames_change_a_little_and_the_camera_moves():
    frames, labels = render_street_sequence(np.random.default_rng(0), 6, 64, 128)
    assert frames.shape == (6, 64, 128, 3) and frames.dtype == np.uint8
    assert labels.shape == (6, 64, 128)
    assert set(np.unique(labels).tolist()) <= {tid for tid, _ in SYNTHETIC_CLASSES.values()}
    changed = [(labels[t] != labels[t + 1]).mean() for t in range(5)]
    assert 0 < max(changed) < 0.2
    assert (labels[0] != labels[-1]).mean() > max(changed)
    _, other = render_street_scene(np.random.default_rng(1), 64, 128)
    assert (labels[-1] != other).mean() > max(changed)


def test_a_sequence_depends_only_on_its_seed():
    first = render_street_sequence(np.random.default_rng(3), 2, 32, 64)
    again = render_street_sequence(np.random.default_rng(3), 2, 32, 64)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_stock_cityscapes_dataset_reads_sequences_in_order(tmp_path):
    paths = generate_cityscapes_sequences(str(tmp_path), num_sequences=2, num_frames=3,
                                          height=32, width=64)
    register_all_modules()
    dataset = CityscapesDataset(
        data_root=str(tmp_path),
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')])
    assert [osp.basename(dataset.get_data_info(i)['img_path']) for i in range(6)] == [
        osp.basename(p) for seq in paths for p in seq
    ]
    assert dataset[4]['gt_seg_map'].shape == (32, 64)


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match='0, 32, 64'):
        render_street_sequence(np.random.default_rng(0), 0, 32, 64)
