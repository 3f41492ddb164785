"""The benchmark's evaluation forward from the learned start against the cold start."""
import pytest
import torch

from mdeq_mm.analysis import build_model, find_mdeq, load_config
from mdeq_mm.analysis.starts import start_speed


def test_both_starts_are_timed_every_round_and_solve_from_their_own_state(config_path,
                                                                          tmp_path):
    config = config_path('mdeq/fcn_mdeq-tiny-init_1xb4-15it_demo-cityscapes-64x128.py')
    model = build_model(load_config(config))
    # an initializer that predicts something: its zero-initialized outputs get random weights
    torch.manual_seed(0)
    for norm in find_mdeq(model).initializer.norms:
        torch.nn.init.normal_(norm.weight, std=0.1)
    checkpoint = tmp_path / 'init.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    result = start_speed(dict(config=config, checkpoint=str(checkpoint), size=(32, 64), batch=1,
                              threads=1, rounds=2))
    for start in ('cold', 'learned'):
        assert len(result[start]['times_s']) == 2
        assert result[start]['steps'] >= 1 and result[start]['nfe'] >= 1
    assert result['learned_over_cold']['median'] > 0
    # the cold start is from zeros, so its solve differs from the learned start's
    assert result['cold']['rel_res'] != result['learned']['rel_res']


def test_a_model_without_initializer_is_refused(demo_config, tmp_path):
    model = build_model(load_config(demo_config))
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'plain.pth')
    with pytest.raises(ValueError, match='no MDEQ backbone with an initializer'):
        start_speed(dict(config=demo_config, checkpoint=str(tmp_path / 'plain.pth'),
                         size=(32, 64), batch=1, threads=1, rounds=1))
