"""Segment a video or a folder of frames with an MDEQ segmentor and overlay the result, like
mmseg's demo/video_demo.py; with --warm-start each frame's equilibrium solve starts from the
previous frame's (mdeq_mm.apis.VideoWarmStart). Prints the f-evaluations of every frame and
their mean.

Example:
    python tools/generate_demo_data.py --num-sequences 2 --num-frames 30
    python tools/video_demo.py data/mdeq_demo_sequences/leftImg8bit/val/synthcity \\
        configs/mdeq/fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py \\
        work_dirs/demo/iter_300.pth --device cpu --warm-start --out work_dirs/video_demo.mp4
"""
import argparse
import contextlib
import os
import os.path as osp
from typing import Iterator, Tuple

import cv2
import numpy as np
from mmengine.config import DictAction
from mmengine.utils import ProgressBar

from mdeq_mm.engine.launch import tool_parser

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv')
STREAM = 'video'


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('video', help='a video file or a folder of frames (sorted by name)')
    parser.add_argument('config', help='config file of an MDEQ segmentor')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--device', default='cuda:0', help='device used for inference')
    parser.add_argument('--warm-start', action='store_true',
                        help="start each frame's solve from the previous frame's equilibrium")
    parser.add_argument('--out', help='output video file (' + ', '.join(VIDEO_EXTENSIONS) +
                        ') or folder of frames; none: only print the f-evaluations')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='opacity of the painted segmentation map, in (0, 1]')
    parser.add_argument('--output-fourcc', default='mp4v', help='fourcc of the output video')
    parser.add_argument('--output-fps', type=float, default=-1,
                        help='fps of the output video (default: the input\'s, or 10 for frames)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, xxx=yyy format')
    args = parser.parse_args(argv)
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    return args


def open_frames(path: str) -> Tuple[Iterator[Tuple[str, np.ndarray]], int, float]:
    """BGR frames of a video file or a folder of images, with names, their count and fps."""
    if osp.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise ValueError(f'no {IMAGE_EXTENSIONS} images in the folder {path!r}')
        return ((n, cv2.imread(osp.join(path, n))) for n in names), len(names), 10.0
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f'cannot open the video {path!r}')

    def read() -> Iterator[Tuple[str, np.ndarray]]:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                capture.release()
                return
            yield f'{index:06d}.png', frame
            index += 1

    return read(), int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)


class FrameWriter:
    """Writes overlaid frames to a video file or, for any other path, to a folder of PNGs."""

    def __init__(self, out: str, fourcc: str, fps: float) -> None:
        self.out, self.fourcc, self.fps = out, fourcc, fps
        self.video = out.lower().endswith(VIDEO_EXTENSIONS)
        self.writer = None
        os.makedirs(osp.dirname(out) if self.video else out, exist_ok=True)

    def write(self, name: str, frame: np.ndarray) -> None:
        if not self.video:
            cv2.imwrite(osp.join(self.out, osp.splitext(name)[0] + '.png'), frame)
            return
        if self.writer is None:
            height, width = frame.shape[:2]
            self.writer = cv2.VideoWriter(self.out, cv2.VideoWriter_fourcc(*self.fourcc),
                                          self.fps, (width, height))
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def main(argv=None) -> list:
    args = parse_args(argv)
    import mdeq_mm  # noqa: F401  (registers the MDEQ components)
    from mmseg.apis import inference_model, init_model
    from mmseg.visualization import SegLocalVisualizer

    from mdeq_mm.apis import VideoWarmStart
    from mdeq_mm.models import MDEQ

    model = init_model(args.config, args.checkpoint, device=args.device,
                       cfg_options=args.cfg_options)
    mdeq = getattr(model, 'backbone', None)
    if not isinstance(mdeq, MDEQ):
        raise ValueError(f'{args.config} has no MDEQ backbone')
    warm_start = VideoWarmStart(model) if args.warm_start else None
    frames, num_frames, fps = open_frames(args.video)
    writer = None
    if args.out:
        writer = FrameWriter(args.out, args.output_fourcc,
                             args.output_fps if args.output_fps > 0 else fps or 10.0)
        visualizer = SegLocalVisualizer(alpha=args.opacity)
        visualizer.dataset_meta = dict(classes=model.dataset_meta['classes'],
                                       palette=model.dataset_meta['palette'])
    f_evals, restarts = [], 0
    progress = ProgressBar(num_frames)
    try:
        for name, frame in frames:
            with (warm_start.next_frames([STREAM]) if warm_start
                  else contextlib.nullcontext()):
                result = inference_model(model, frame)
            f_evals.append(int(mdeq.last_f_evals[0]))
            restarts += bool(warm_start and warm_start.last_cold_restart[0])
            if writer is not None:
                visualizer.add_datasample(name, frame[..., ::-1], result, draw_gt=False,
                                          show=False, with_labels=False)
                writer.write(name, visualizer.get_image()[..., ::-1])
            progress.update()
    finally:
        if writer is not None:
            writer.close()
    start = 'warm start' if warm_start else 'cold start'
    print(f'\nf-evaluations per frame ({start}): ' + ' '.join(map(str, f_evals)))
    print(f'mean f-evaluations per frame: {np.mean(f_evals):.2f} over {len(f_evals)} frames'
          + (f', {restarts} cold restarts (scene cuts)' if warm_start else ''))
    if args.out:
        print(f'wrote {args.out}')
    return f_evals


if __name__ == '__main__':
    main()
