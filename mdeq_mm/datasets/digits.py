"""Real handwritten digits as a folder-per-class image dataset for mmpretrain.

scikit-learn ships the UCI optical-recognition digits (1,797 real 8x8 grey images of 0-9,
written by 43 people) inside its wheel, so a real classification data set needs no download.
:func:`write_digits_dataset` writes them as PNG files in the layout mmpretrain's stock
``CustomDataset`` reads (``{split}/{class}/{index}.png``), upscaled with nearest-neighbour
interpolation so that the stride-4 stems of ImageNet-style models still see several pixels.
"""
import os
import os.path as osp
from typing import Dict, Tuple

import numpy as np
from PIL import Image

DIGIT_CLASSES: Tuple[str, ...] = tuple(str(d) for d in range(10))
# Per-channel mean and std of the upscaled images (0-255), for the data preprocessor.
DIGITS_MEAN = 77.8
DIGITS_STD = 95.9


def write_digits_dataset(out_dir: str,
                         img_size: int = 16,
                         test_ratio: float = 0.25,
                         seed: int = 0) -> Dict[str, int]:
    """Write scikit-learn's digits as ``train/`` and ``test/`` class folders of RGB PNGs.

    The split is stratified by class and fixed by ``seed``, so every model in a comparison
    sees the same images. Existing files are overwritten.

    Args:
        out_dir (str): Root folder; ``train`` and ``test`` are created inside.
        img_size (int): Side of the written square images, a multiple of 8 (the digits are
            8x8). Defaults to 16.
        test_ratio (float): Fraction of each class held out for ``test``. Defaults to 0.25.
        seed (int): Seed of the stratified split. Defaults to 0.

    Returns:
        dict[str, int]: Number of images written per split.

    Example:
        >>> import tempfile
        >>> from mdeq_mm.datasets import write_digits_dataset
        >>> with tempfile.TemporaryDirectory() as root:
        ...     write_digits_dataset(root, img_size=16)
        {'train': 1347, 'test': 450}
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError('the digits data set comes with scikit-learn: '
                          'pip install scikit-learn (or the "tests" extra)') from e
    if not isinstance(img_size, int) or img_size < 8 or img_size % 8:
        raise ValueError(f'img_size must be a positive multiple of 8, got {img_size!r}')
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f'test_ratio must be in (0, 1), got {test_ratio!r}')
    digits = load_digits()
    # 0..16 intensities -> 0..255, white digits on black as in the original scans
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    scale = img_size // 8
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(
        index, test_size=test_ratio, random_state=seed, stratify=digits.target)
    counts = {}
    for split, split_idx in (('train', train_idx), ('test', test_idx)):
        for i in split_idx:
            folder = osp.join(out_dir, split, DIGIT_CLASSES[digits.target[i]])
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(images[i]).convert('RGB').save(osp.join(folder, f'{i:04d}.png'))
        counts[split] = len(split_idx)
    return counts
