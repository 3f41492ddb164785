"""Fixed input batches for measurements: generated street scenes as model inputs and samples."""
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .models import task_of

SCENE_SEED = 0


def generated_scenes(num: int, height: int, width: int,
                     seed: int = SCENE_SEED) -> Tuple[np.ndarray, np.ndarray]:
    """``num`` generated street scenes: RGB images (N, H, W, 3) and train-id labels (N, H, W)."""
    from mdeq_mm.datasets import render_street_scene
    rng = np.random.default_rng(seed)
    scenes = [render_street_scene(rng, height, width) for _ in range(num)]
    return np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])


def to_inputs(model: nn.Module, images: np.ndarray) -> Tensor:
    """RGB uint8 images (N, H, W, 3) as the float (N, 3, H, W) input of ``model``, normalized
    with the mean and std of its data preprocessor (configured for RGB)."""
    pre = model.data_preprocessor
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    if getattr(pre, '_enable_normalize', False):
        x = (x - pre.mean.view(1, -1, 1, 1)) / pre.std.view(1, -1, 1, 1)
    return x.contiguous()


def make_batch(model: nn.Module,
               images: np.ndarray,
               labels: Optional[np.ndarray] = None,
               seed: int = SCENE_SEED) -> Tuple[Tensor, List[Any]]:
    """Inputs and data samples with ground truth for ``model``'s loss.

    Args:
        model (nn.Module): An mmseg segmentor or an mmpretrain classifier.
        images (np.ndarray): RGB uint8 images (N, H, W, 3).
        labels (np.ndarray, optional): Segmentation train ids (N, H, W); fixed pseudo-random
            ones (from ``seed``) when None. Classifiers always get pseudo-random class labels.
        seed (int): Seed of the pseudo-random labels. Defaults to 0.

    Returns:
        tuple: The (N, 3, H, W) inputs and a list of ``SegDataSample`` / ``DataSample``.
    """
    inputs = to_inputs(model, images)
    num, height, width = images.shape[:3]
    rng = np.random.default_rng(seed)
    if task_of(model) == 'cls':
        from mmpretrain.structures import DataSample
        targets = rng.integers(0, model.head.num_classes, num)
        return inputs, [DataSample().set_gt_label(int(t)) for t in targets]
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    if labels is None:
        labels = rng.integers(0, model.decode_head.num_classes, (num, height, width))
    samples = []
    for label in labels:
        sample = SegDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(np.asarray(label)).long()[None])
        samples.append(sample)
    return inputs, samples
