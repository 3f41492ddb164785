"""Smoke tests of the benchmark tools: they run end to end and write sane, complete reports."""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mdeq_mm.datasets import generate_cityscapes_like

pytestmark = pytest.mark.slow

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(REPO, 'configs', 'mdeq', 'fcn_mdeq-tiny_1xb4-300_demo-cityscapes-64x128.py')
QUICK_STEPS = 6


def run_tool(args, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc.stdout + proc.stderr


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_benchmark_quick_writes_complete_report(tmp_path):
    run_tool(['tools/benchmark.py', '--quick', '--out-dir', str(tmp_path)])

    for name in ('results.md', 'memory_vs_steps.png', 'step_time_vs_steps.png', 'models.png',
                 'solver_comparison.png'):
        assert (tmp_path / name).stat().st_size > 0, name
    report = json.loads((tmp_path / 'results.json').read_text())
    runs = report['runs']
    for key in ('seg/mdeq-implicit', 'seg/mdeq-phantom', 'seg/mdeq-unrolled',
                'seg/HRNet-W18-Small', 'sweep/implicit-2', 'sweep/unrolled-8'):
        run = runs[key]
        assert 'error' not in run, run
        for field in ('params', 'train_peak_bytes', 'static_bytes', 'step_time_s'):
            assert positive(run[field]), (key, field, run[field])
        assert run['train_peak_bytes'] > run['static_bytes'], key

    implicit = runs['seg/mdeq-implicit']
    assert implicit['forward']['nfe'] == QUICK_STEPS
    assert 0 < implicit['backward']['nfe'] <= QUICK_STEPS
    assert 0 < implicit['forward']['rel_res'] < 10
    for field in ('flops', 'flops_f', 'flops_outside_f', 'infer_time_s'):
        assert positive(implicit[field]), field
    assert implicit['flops'] == pytest.approx(
        implicit['flops_outside_f'] + implicit['flops_steps'] * implicit['flops_f'])
    assert runs['seg/mdeq-unrolled']['forward'] is None
    assert runs['seg/mdeq-phantom']['backward'] is None
    assert positive(runs['seg/HRNet-W18-Small']['flops'])

    goals = report['goals']
    assert goals and all({'goal', 'value', 'target', 'met'} <= set(g) for g in goals)
    assert positive(goals[0]['value'])
    for problem in ('mdeq', 'contractive'):
        result = report['solvers'][problem]
        for solver in ('ours/broyden', 'torchdeq/broyden', 'ours/anderson', 'torchdeq/anderson'):
            entry = result[solver]
            assert entry['nfe'] >= 1 and positive(entry['wall_s']), (problem, solver)
            assert entry['curve'] and all(positive(v) for v in entry['curve'])
    assert '## Goals' in (tmp_path / 'results.md').read_text()


def test_analyze_solver_curves_and_anytime_inference(tmp_path):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import benchmark_memory
    finally:
        sys.path.pop(0)
    data_root = generate_cityscapes_like(str(tmp_path / 'data'), num_train=1, num_val=2,
                                         height=32, width=64)
    model = benchmark_memory.build_model(benchmark_memory.load_config(DEMO_CONFIG))
    checkpoint = tmp_path / 'random.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    out_dir = tmp_path / 'analysis'

    run_tool(['tools/analyze_solver.py', DEMO_CONFIG, '--checkpoint', str(checkpoint),
              '--size', '32', '64', '--max-iter', '4', '--solvers', 'broyden', 'anderson',
              '--budgets', '1', '3', '--out-dir', str(out_dir), '--cfg-options',
              f'test_dataloader.dataset.data_root={data_root}'])

    assert (out_dir / 'residual_curves.png').stat().st_size > 0
    assert (out_dir / 'anytime.png').stat().st_size > 0
    residuals = json.loads((out_dir / 'residuals.json').read_text())
    assert set(residuals['forward']) == {'broyden', 'anderson'}
    for curve in [*residuals['forward'].values(), residuals['backward']]:
        assert len(curve['rel']) == 4 and len(curve['rel'][0]) == 2
        assert all(positive(v) for row in curve['rel'] for v in row)
    anytime = json.loads((out_dir / 'anytime.json').read_text())
    assert [row['budget'] for row in anytime['rows']] == [1, 3]
    for row in anytime['rows']:
        assert row['metric'] == 'mIoU' and 0.0 <= row['value'] <= 100.0
        assert row['mean_steps'] <= row['budget'] and positive(row['mean_rel_res'])
