"""Smoke tests of the benchmark tools: they run end to end and write sane, complete reports."""
import json
import math

import pytest
import torch

from mdeq_mm.analysis import build_model, load_config
from mdeq_mm.datasets import generate_cityscapes_like

pytestmark = pytest.mark.slow

QUICK_SWEEP = (2, 8)


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_benchmark_quick_writes_complete_report(tmp_path, run_tool):
    run_tool(['tools/analysis_tools/benchmark.py', '--quick', '--out-dir', str(tmp_path)],
             timeout=900)

    for name in ('results.md', 'memory_vs_f_evals.png', 'solver_curves.png'):
        assert (tmp_path / name).stat().st_size > 0, name
    report = json.loads((tmp_path / 'results.json').read_text())
    runs = report['steps']['1']
    assert len(runs) == 5
    for key, run in runs.items():
        assert 'error' not in run, run
        for field in ('params', 'train_peak_bytes', 'static_bytes', 'step_time_s'):
            assert positive(run[field]), (key, field, run[field])
        assert run['train_peak_bytes'] > run['static_bytes'], key
        assert len(run['step_times_s']) == 2
    implicit = runs['MDEQ-tiny (demo) implicit, trained']
    assert 0 < implicit['forward']['nfe'] <= 12 and 0 < implicit['backward']['nfe'] <= 12
    assert positive(implicit['flops_f']) and positive(implicit['flops_outside_f'])
    assert positive(runs['HRNet-W18-Small']['flops'])
    assert runs['MDEQ-tiny (demo) phantom, trained']['backward'] is None
    # the recommended recipe: half the forward budget (6 of 12), Jacobian-free, no linear solve
    recipe = runs['MDEQ-tiny (demo) recommended, trained']
    assert recipe['forward']['nfe'] <= 6 and recipe['backward'] is None
    assert report['checkpoint'].endswith('iter_3.pth')

    # the evaluation forward from the learned start (an initializer trained for 2 iterations
    # from the 3-iteration state) and from zeros, both timed every round
    starts = report['starts']['1']
    for start in ('cold', 'learned'):
        assert len(starts[start]['times_s']) == 2 and starts[start]['steps'] >= 1
    assert positive(starts['learned_over_cold']['median'])
    assert any('learned / cold start' in g['name'] for g in report['goals'])

    memory = report['memory']
    assert memory['implicit-8']['first_step']['forward']['nfe'] == QUICK_SWEEP[-1]
    assert memory['unrolled-8']['train_peak_bytes'] > memory['unrolled-2']['train_peak_bytes']
    race = report['solvers']['1']
    for entry in (v for k, v in race.items() if '/overhead_' not in k):
        assert entry['nfe'] >= 1 and all(positive(v) for v in entry['curve'])
    assert positive(report['f']['1']['conv']['f_gflops_per_s'])

    goals = report['goals']
    assert any('at 8 / at 2 f-evals' in g['name'] for g in goals)
    assert any('recommended recipe / HRNet-W18-Small' in g['name'] for g in goals)
    assert all(g['value'] is not None for g in goals)
    assert '## Goals' in (tmp_path / 'results.md').read_text()


def test_analyze_solver_curves_and_anytime_inference(tmp_path, demo_config, run_tool):
    data_root = generate_cityscapes_like(str(tmp_path / 'data'), num_train=1, num_val=2,
                                         height=32, width=64)
    model = build_model(load_config(demo_config))
    checkpoint = tmp_path / 'random.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    out_dir = tmp_path / 'analysis'

    run_tool(['tools/analysis_tools/analyze_solver.py', demo_config,
              '--checkpoint', str(checkpoint), '--size', '32', '64', '--max-iter', '4', '--solvers', 'broyden', 'anderson',
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
