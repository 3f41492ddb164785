"""Cold vs warm start measured on generated sequences through mmseg's inference API."""
import numpy as np
import pytest

from mdeq_mm.analysis import measure_warm_start, plot_warm_start
from mdeq_mm.datasets import render_street_sequence

# an untrained model reaches this relative residual from zeros in a few steps
LOOSE_TOL = 0.9


@pytest.fixture(scope='module')
def segmentor(demo_config):
    import mdeq_mm  # noqa: F401
    from mmseg.apis import init_model
    return init_model(demo_config, None, device='cpu')


def test_both_runs_cover_every_frame_and_the_solver_settings_come_back(segmentor, tmp_path):
    rng = np.random.default_rng(0)
    sequences = [render_street_sequence(rng, 3, 32, 64) for _ in range(2)]
    before = segmentor.backbone.deq.forward_cfg
    result = measure_warm_start(segmentor, sequences, tol=LOOSE_TOL, max_iter=6)
    assert segmentor.backbone.deq.forward_cfg == before
    assert result['sequence_lengths'] == [3, 3]
    for mode in ('cold', 'warm'):
        run = result[mode]
        assert len(run['f_evals']) == len(run['rel_trace']) == 6
        assert all(1 <= n <= 6 + 1 for n in run['f_evals'])
        assert 0 <= run['mIoU'] <= 100 and len(run['sequence_mIoU']) == 2
    # the first frame has no previous state: the same cold solve in both runs
    assert result['warm']['f_evals'][0] == result['cold']['f_evals'][0]
    assert not any(result['cold']['cold_restart'])
    summary = result['summary']
    assert summary['saving'] == pytest.approx(
        summary['cold']['mean_f_evals'] / summary['warm']['mean_f_evals'])
    plot_warm_start(str(tmp_path / 'plot.png'), result)
    assert (tmp_path / 'plot.png').stat().st_size > 0


def test_a_learned_initializer_adds_its_runs_and_untrained_matches_the_cold_start(demo_config):
    import mdeq_mm  # noqa: F401
    from mmseg.apis import init_model
    segmentor = init_model(demo_config, None, device='cpu', cfg_options={
        'model.backbone.initializer': dict(type='MDEQInitializer')})
    rng = np.random.default_rng(0)
    sequences = [render_street_sequence(rng, 2, 32, 64) for _ in range(2)]
    result = measure_warm_start(segmentor, sequences, tol=LOOSE_TOL, max_iter=6)
    assert segmentor.backbone.initializer is not None  # back after the cold runs
    for mode in ('cold', 'warm', 'learned', 'warm+learned'):
        assert len(result[mode]['f_evals']) == 4
        assert result['summary'][mode]['saving'] > 0
    # an untrained initializer predicts zeros: the same solves as from zeros
    assert result['learned']['f_evals'] == result['cold']['f_evals']
    assert result['warm+learned']['f_evals'] == result['warm']['f_evals']
