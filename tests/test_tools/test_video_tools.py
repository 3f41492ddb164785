"""The video demo and the warm-start measurement run end to end on generated sequences."""
import json
import os
import os.path as osp

import cv2
import pytest
import torch

from mdeq_mm.analysis import build_model, load_config
from mdeq_mm.datasets import generate_cityscapes_sequences

pytestmark = pytest.mark.slow

# an untrained model reaches this relative residual from zeros in a few steps
FAST_SOLVE = ['--cfg-options', 'model.backbone.forward_solver.tol=0.9',
              'model.backbone.forward_solver.max_iter=6']


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, demo_config):
    """Untrained weights of the demo model, with the Cityscapes classes in their meta."""
    from mmseg.utils import get_classes, get_palette
    model = build_model(load_config(demo_config))
    path = str(tmp_path_factory.mktemp('ckpt') / 'untrained.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=get_classes('cityscapes'),
                                                palette=get_palette('cityscapes')))), path)
    return path


@pytest.fixture(scope='module')
def frame_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('sequences'))
    paths = generate_cityscapes_sequences(root, num_sequences=2, num_frames=2, height=64,
                                          width=128)
    return osp.dirname(paths[0][0])


def test_video_demo_overlays_a_folder_of_frames_with_warm_start(run_tool, demo_config, checkpoint,
                                                                 frame_dir, tmp_path):
    out = tmp_path / 'overlay'
    output = run_tool(['tools/video_demo.py', frame_dir, demo_config, checkpoint, '--device',
                       'cpu', '--warm-start', '--out', str(out), *FAST_SOLVE])
    assert len(list(out.glob('*.png'))) == 4
    assert 'f-evaluations per frame (warm start):' in output
    assert 'mean f-evaluations per frame:' in output


def test_video_demo_reads_and_writes_a_video_file(run_tool, demo_config, checkpoint, frame_dir,
                                                   tmp_path):
    video = str(tmp_path / 'in.avi')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'MJPG'), 5, (128, 64))
    for name in sorted(os.listdir(frame_dir)):
        writer.write(cv2.imread(osp.join(frame_dir, name)))
    writer.release()
    out = str(tmp_path / 'out.avi')
    output = run_tool(['tools/video_demo.py', video, demo_config, checkpoint, '--device', 'cpu',
                       '--out', out, '--output-fourcc', 'MJPG', *FAST_SOLVE])
    assert 'over 4 frames' in output
    capture = cv2.VideoCapture(out)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_warm_start_measurement_writes_json_and_plot(run_tool, demo_config, checkpoint, tmp_path):
    run_tool(['tools/analysis_tools/video_warm_start.py', demo_config, checkpoint,
              '--num-sequences', '2', '--num-frames', '2', '--size', '64', '128', '--tol', '0.9',
              '--max-iter', '6', '--out-dir', str(tmp_path)])
    result = json.loads((tmp_path / 'video_warm_start.json').read_text())
    (run, ) = result['runs']
    assert len(run['cold']['f_evals']) == len(run['warm']['f_evals']) == 4
    assert (tmp_path / 'video_warm_start.png').stat().st_size > 0
