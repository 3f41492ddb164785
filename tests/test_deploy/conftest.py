"""Fixtures of the export tests: a tiny segmentor and classifier built from the shipped configs,
and the real Cityscapes frame when it is there."""
from pathlib import Path

import numpy as np
import pytest
import torch

from mdeq_mm.analysis import build_model, load_config

# The learning-benchmark configs read the frame from data/cityscapes_frame; CI finds the same
# sample in the shared data laid beside the repository.
FRAME_DIRS = ('data/cityscapes_frame', '../shared/data/cityscapes_frankfurt_sample')
TINY_SEG = dict(num_channels=(8, 16), expansion=2)


@pytest.fixture(scope='session')
def tiny_segmentor(demo_config):
    """``tiny_segmentor(solver='broyden')``: the demo segmentor with 8-16 channels, random init,
    in eval mode."""

    def build(solver='broyden'):
        cfg = load_config(demo_config)
        cfg.merge_from_dict({
            'model.decode_head.in_channels': list(TINY_SEG['num_channels']),
            'model.decode_head.in_index': (0, 1),
            'model.decode_head.channels': sum(TINY_SEG['num_channels']),
        })
        torch.manual_seed(0)
        return build_model(cfg, backbone=dict(
            arch=TINY_SEG, forward_solver=dict(type=solver, max_iter=12, tol=1e-3))).eval()

    return build


@pytest.fixture(scope='session')
def tiny_classifier(config_path):
    """``tiny_classifier(solver='broyden', initializer=None)``: the digits MDEQ classifier (16x16
    inputs), random init, in eval mode."""

    def build(solver='broyden', initializer=None):
        cfg = load_config(config_path('mdeq/mdeq-tiny_1xb32-300it_digits-16x16.py'))
        torch.manual_seed(0)
        return build_model(cfg, backbone=dict(
            forward_solver=dict(type=solver, max_iter=12, tol=1e-3),
            initializer=initializer)).eval()

    return build


@pytest.fixture(scope='session')
def cityscapes_frame(repo) -> np.ndarray:
    """The real Cityscapes frame, RGB uint8 (H, W, 3); skips the test where it is absent."""
    import mmcv
    for folder in FRAME_DIRS:
        frames = sorted((repo / folder).glob('leftImg8bit/*/*/*_leftImg8bit.png'))
        if frames:
            return mmcv.imread(str(frames[0]), channel_order='rgb')
    pytest.skip(f'no Cityscapes frame under {" or ".join(FRAME_DIRS)} (relative to the '
                'repository)')
