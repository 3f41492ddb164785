"""A small generated street-scene dataset in the Cityscapes folder layout.

Each image is a random street scene (sky, buildings, vegetation, sidewalk, road in perspective,
cars, poles) drawn with per-class colour, shading and noise; its label image holds Cityscapes
train ids, so mmseg's stock ``CityscapesDataset``, pipelines and ``IoUMetric`` read it unchanged.
The classes have spatial structure (sky above buildings, road below the horizon, cars on the road),
so a segmentation model has something real to learn, yet a few hundred iterations suffice.
"""
import os
import os.path as osp
from typing import Dict, Tuple

import numpy as np
from PIL import Image

# Cityscapes train ids of the classes drawn, and their base colours (RGB).
SYNTHETIC_CLASSES: Dict[str, Tuple[int, Tuple[int, int, int]]] = {
    'road': (0, (128, 64, 128)),
    'sidewalk': (1, (244, 35, 232)),
    'building': (2, (70, 70, 70)),
    'pole': (5, (153, 153, 153)),
    'vegetation': (8, (107, 142, 35)),
    'sky': (10, (70, 130, 180)),
    'car': (13, (0, 0, 142)),
}
CITY = 'synthcity'


def render_street_scene(rng: np.random.Generator, height: int,
                        width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one scene.

    Args:
        rng (np.random.Generator): Source of randomness.
        height (int): Image height in pixels.
        width (int): Image width in pixels.

    Returns:
        tuple[np.ndarray, np.ndarray]: The RGB image (H, W, 3) uint8 and its train-id label
        (H, W) uint8.
    """
    label, horizon, vanish = draw_street(rng, height, width)
    for _ in range(rng.integers(1, 4)):
        depth, aspect, lateral = rng.uniform(0.2, 0.9), rng.uniform(1.4, 2.2), rng.uniform(
            -0.6, 0.6)
        draw_car(label, horizon, vanish, depth, aspect, lateral)
    return paint_street(rng, label, class_colours(rng)), label


def draw_street(rng: np.random.Generator, height: int,
                width: int) -> Tuple[np.ndarray, int, float]:
    """The train-id label of a street without cars: sky, a skyline of buildings and
    vegetation on the horizon, a road narrowing to a vanishing point, sidewalks and poles.

    Args:
        rng (np.random.Generator): Source of randomness.
        height (int): Label height in pixels.
        width (int): Label width in pixels.

    Returns:
        tuple: The (H, W) uint8 label, the horizon row and the vanishing point's column.
    """
    ids = {name: tid for name, (tid, _) in SYNTHETIC_CLASSES.items()}
    label = np.full((height, width), ids['sky'], dtype=np.uint8)
    rows, cols = np.mgrid[0:height, 0:width]

    horizon = int(height * rng.uniform(0.35, 0.55))
    # Buildings: a skyline of blocks standing on the horizon.
    x = 0
    while x < width:
        block_w = int(width * rng.uniform(0.08, 0.25))
        top = int(horizon * rng.uniform(0.05, 0.7))
        kind = 'vegetation' if rng.random() < 0.3 else 'building'
        label[top:horizon, x:x + block_w] = ids[kind]
        x += block_w
    # Road: a trapezoid narrowing to a vanishing point; sidewalks beside it.
    vanish = width * rng.uniform(0.35, 0.65)
    below = rows >= horizon
    depth = np.clip((rows - horizon) / max(height - horizon, 1), 0, 1)
    half_road = depth * width * rng.uniform(0.45, 0.7)
    half_walk = half_road * 1.35 + depth * width * 0.05
    offset = np.abs(cols - vanish)
    label[below & (offset >= half_road)] = ids['vegetation']
    label[below & (offset < half_walk)] = ids['sidewalk']
    label[below & (offset < half_road)] = ids['road']
    # Poles from above the horizon down to the ground.
    for _ in range(rng.integers(1, 4)):
        px = int(rng.uniform(0, width))
        pw = max(1, width // 80)
        ptop = int(horizon * rng.uniform(0.3, 0.8))
        pbottom = int(horizon + (height - horizon) * rng.uniform(0.1, 0.6))
        label[ptop:pbottom, px:px + pw] = ids['pole']
    return label, horizon, vanish


def draw_car(label: np.ndarray, horizon: int, vanish: float, depth: float, aspect: float,
             lateral: float) -> None:
    """Draw a car on the road of ``label`` in place, larger the nearer it is.

    Args:
        label (np.ndarray): (H, W) train-id label from :func:`draw_street`.
        horizon (int): Its horizon row.
        vanish (float): Its vanishing point's column.
        depth (float): Where the car stands between the horizon (0) and the bottom edge (1).
        aspect (float): Width over height.
        lateral (float): Offset from the road's centre line, -1 to 1 of the half width.
    """
    height, width = label.shape
    cy = int(horizon + (height - horizon) * depth)
    d = (cy - horizon) / max(height - horizon, 1)
    ch = max(2, int(height * 0.25 * d))
    cw = max(3, int(ch * aspect))
    cx = int(vanish + lateral * d * width * 0.5)
    label[max(cy - ch, 0):cy, max(cx - cw // 2, 0):cx + cw // 2] = SYNTHETIC_CLASSES['car'][0]


def class_colours(rng: np.random.Generator) -> Dict[int, np.ndarray]:
    """A colour per train id: the class's base colour with a random jitter."""
    return {
        tid: np.clip(np.array(colour) + rng.normal(0, 12, size=3), 0, 255)
        for tid, colour in SYNTHETIC_CLASSES.values()
    }


def paint_street(rng: np.random.Generator, label: np.ndarray,
                 colours: Dict[int, np.ndarray]) -> np.ndarray:
    """The RGB image of ``label``: class colours, darker towards the top, with pixel noise.

    Args:
        rng (np.random.Generator): Source of the noise.
        label (np.ndarray): (H, W) train ids.
        colours (dict): Train id to RGB colour, from :func:`class_colours`.

    Returns:
        np.ndarray: (H, W, 3) uint8 image.
    """
    height = label.shape[0]
    image = np.zeros(label.shape + (3, ), dtype=np.float32)
    for tid, colour in colours.items():
        image[label == tid] = colour
    shade = 0.75 + 0.25 * (np.arange(height) / height)[:, None, None]
    image = image * shade + rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate_cityscapes_like(out_dir: str,
                             num_train: int = 24,
                             num_val: int = 8,
                             height: int = 128,
                             width: int = 256,
                             seed: int = 0) -> str:
    """Write a Cityscapes-layout dataset with ``num_train``/``num_val`` scenes.

    Files follow ``leftImg8bit/{split}/{city}/{name}_leftImg8bit.png`` and
    ``gtFine/{split}/{city}/{name}_gtFine_labelTrainIds.png``. Existing files are overwritten,
    so the same arguments always give the same dataset.

    Args:
        out_dir (str): Dataset root (mmseg's ``data_root``).
        num_train (int): Training scenes. Defaults to 24.
        num_val (int): Validation scenes. Defaults to 8.
        height (int): Image height. Defaults to 128.
        width (int): Image width. Defaults to 256.
        seed (int): Random seed. Defaults to 0.

    Returns:
        str: ``out_dir``.
    """
    if min(num_train, num_val) < 1 or min(height, width) < 16:
        raise ValueError('need num_train, num_val >= 1 and height, width >= 16, got '
                         f'{num_train}, {num_val}, {height}, {width}')
    rng = np.random.default_rng(seed)
    for split, count in (('train', num_train), ('val', num_val)):
        img_dir = osp.join(out_dir, 'leftImg8bit', split, CITY)
        ann_dir = osp.join(out_dir, 'gtFine', split, CITY)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for idx in range(count):
            image, label = render_street_scene(rng, height, width)
            name = f'{CITY}_{split}00_{idx:06d}'
            Image.fromarray(image).save(osp.join(img_dir, f'{name}_leftImg8bit.png'))
            Image.fromarray(label).save(
                osp.join(ann_dir, f'{name}_gtFine_labelTrainIds.png'))
    return out_dir
