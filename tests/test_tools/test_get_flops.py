"""tools/analysis_tools/get_flops.py prints mmseg's figures for HRNet and the DEQ split for
MDEQ, with the f-evaluations measured from a checkpoint on a config's test images."""
import re

import pytest
import torch

from mdeq_mm.analysis import build_model, load_config
from mdeq_mm.datasets import generate_cityscapes_like

pytestmark = pytest.mark.slow

TOOL = 'tools/analysis_tools/get_flops.py'


def gflops(output: str, label: str) -> float:
    """The figure of a line ``label: ... = 1.23G ...`` (the last ``=``'s, else the first)."""
    return float(re.search(rf'^{label}: (?:.* = )?([\d.]+)G', output, re.M).group(1))


def test_get_flops_reports_hrnet_and_mdeq_with_measured_f_evaluations(
        tmp_path, run_tool, demo_config, config_path):
    out = run_tool([TOOL, config_path('hrnet/fcn_hr18s_4xb3-120k_cityscapes-512x1024.py'),
                    '--shape', '64', '128'])
    assert 'Input shape: (3, 64, 128)' in out and re.search(r'^Params: 3\.9\dM$', out, re.M)
    assert re.search(r'^Flops: [\d.]+G$', out, re.M) and 'f-evaluations' not in out

    data_root = generate_cityscapes_like(str(tmp_path / 'data'), num_train=1, num_val=2,
                                         height=64, width=128)
    checkpoint = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict=build_model(load_config(demo_config)).state_dict()), checkpoint)
    out = run_tool([TOOL, demo_config, '--shape', '60', '120', '--checkpoint', checkpoint,
                    '--num-images', '2', '--cfg-options',
                    f'test_dataloader.dataset.data_root={data_root}',
                    'model.backbone.forward_solver.tol=0.0'])
    assert 'Use size divisor set input shape from (60, 120) to (64, 128)' in out
    assert 'Flops: ' in out and '(at the budget of 12 f-evaluations)' in out
    once = gflops(out, r'Once per image \(stem, injection, head\)')
    f = gflops(out, 'One evaluation of f')
    assert gflops(out, 'Total at the budget') == pytest.approx(once + 12 * f, rel=1e-3)
    # tol 0: every image spends the whole budget
    assert 'Measured on 2 image(s): mean 12.00 f-evaluations to reach tol=0' in out
    assert gflops(out, 'Total at the measured mean') == gflops(out, 'Total at the budget')
