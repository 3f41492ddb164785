"""Short generated street-scene videos with per-frame labels, in the Cityscapes folder layout.

A street (:func:`draw_street`) is drawn once on a canvas twice the frame size; each frame
is a window of it seen by a camera that drives forward (the window shrinks towards the
vanishing point) and drifts sideways, with cars that move along the road. The label is cut
from the same window, so every frame has its Cityscapes train-id ground truth; the class
colours stay fixed through a sequence and the pixel noise is new in every frame.
"""
import os
import os.path as osp
from typing import List, Tuple

import cv2
import numpy as np
from PIL import Image

from .synthetic_cityscapes import CITY, class_colours, draw_car, draw_street, paint_street

# The canvas is this many times the frame size, so that zooming in keeps detail.
CANVAS_SCALE = 2
# The first frame sees 1 / START_ZOOM of the canvas, leaving room for the drift.
START_ZOOM = 1.3


def render_street_sequence(rng: np.random.Generator,
                           num_frames: int,
                           height: int,
                           width: int,
                           forward: Tuple[float, float] = (0.01, 0.03),
                           drift: Tuple[float, float] = (0.002, 0.006)
                           ) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one sequence of a camera moving down a street.

    Args:
        rng (np.random.Generator): Source of randomness.
        num_frames (int): Frames.
        height (int): Frame height in pixels.
        width (int): Frame width in pixels.
        forward (tuple[float, float]): Range of the zoom gained per frame (ego-motion
            forward). Defaults to (0.01, 0.03).
        drift (tuple[float, float]): Range of the sideways drift per frame, as a fraction of
            the canvas width, left or right at random. Defaults to (0.002, 0.006).

    Returns:
        tuple[np.ndarray, np.ndarray]: RGB frames (T, H, W, 3) uint8 and their train-id labels
        (T, H, W) uint8.
    """
    if num_frames < 1 or min(height, width) < 16:
        raise ValueError('need num_frames >= 1 and height, width >= 16, got '
                         f'{num_frames}, {height}, {width}')
    canvas_h, canvas_w = CANVAS_SCALE * height, CANVAS_SCALE * width
    street, horizon, vanish = draw_street(rng, canvas_h, canvas_w)
    colours = class_colours(rng)
    speed = rng.uniform(*forward)
    sideways = rng.uniform(*drift) * rng.choice((-1, 1)) * canvas_w
    # cars: depth on the road (0 horizon, 1 bottom), its change per frame, aspect, lateral
    cars = [(rng.uniform(0.2, 0.9), rng.uniform(-0.015, 0.015), rng.uniform(1.4, 2.2),
             rng.uniform(-0.6, 0.6), rng.uniform(-0.01, 0.01))
            for _ in range(rng.integers(1, 4))]
    frames, labels = [], []
    for t in range(num_frames):
        canvas = street.copy()
        for depth, speed_depth, aspect, lateral, speed_lateral in cars:
            draw_car(canvas, horizon, vanish, float(np.clip(depth + speed_depth * t, 0.05, 1)),
                     aspect, lateral + speed_lateral * t)
        zoom = START_ZOOM * (1 + speed * t)
        win_h, win_w = canvas_h / zoom, canvas_w / zoom
        # zoom about the vanishing point (the focus of expansion), shifted by the drift
        x0 = np.clip(vanish * (1 - 1 / zoom) + sideways * t, 0, canvas_w - win_w)
        y0 = np.clip(horizon * (1 - 1 / zoom), 0, canvas_h - win_h)
        window = canvas[int(y0):int(y0 + win_h), int(x0):int(x0 + win_w)]
        label = cv2.resize(window, (width, height), interpolation=cv2.INTER_NEAREST)
        frames.append(paint_street(rng, label, colours))
        labels.append(label)
    return np.stack(frames), np.stack(labels)


def generate_cityscapes_sequences(out_dir: str,
                                  num_sequences: int = 2,
                                  num_frames: int = 8,
                                  height: int = 128,
                                  width: int = 256,
                                  seed: int = 0,
                                  split: str = 'val') -> List[List[str]]:
    """Write ``num_sequences`` sequences as Cityscapes-layout frames and labels.

    Frame ``t`` of sequence ``s`` is ``leftImg8bit/{split}/{city}/{city}_{s:06d}_{t:06d}_
    leftImg8bit.png`` with ``gtFine/.../..._gtFine_labelTrainIds.png`` beside it (the
    Cityscapes naming of sequences), so mmseg's ``CityscapesDataset`` reads them and sorting
    the file names plays the sequences one after the other. Existing files are overwritten.

    Args:
        out_dir (str): Dataset root (mmseg's ``data_root``).
        num_sequences (int): Sequences. Defaults to 2.
        num_frames (int): Frames per sequence. Defaults to 8.
        height (int): Frame height. Defaults to 128.
        width (int): Frame width. Defaults to 256.
        seed (int): Random seed. Defaults to 0.
        split (str): Split folder. Defaults to 'val'.

    Returns:
        list[list[str]]: The image paths, per sequence.
    """
    if num_sequences < 1:
        raise ValueError(f'num_sequences must be >= 1, got {num_sequences}')
    rng = np.random.default_rng(seed)
    img_dir = osp.join(out_dir, 'leftImg8bit', split, CITY)
    ann_dir = osp.join(out_dir, 'gtFine', split, CITY)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    paths = []
    for seq in range(num_sequences):
        frames, labels = render_street_sequence(rng, num_frames, height, width)
        paths.append([])
        for t, (frame, label) in enumerate(zip(frames, labels)):
            name = f'{CITY}_{seq:06d}_{t:06d}'
            paths[-1].append(osp.join(img_dir, f'{name}_leftImg8bit.png'))
            Image.fromarray(frame).save(paths[-1][-1])
            Image.fromarray(label).save(osp.join(ann_dir, f'{name}_gtFine_labelTrainIds.png'))
    return paths
