"""The speed benchmark times a config's training recipe, fixed-point correction included."""
import pytest
import torch

from mdeq_mm.analysis import build_model, find_mdeq, generated_scenes, load_config, make_batch
from mdeq_mm.analysis.steps import recipe_spec, training_step
from mdeq_mm.engine.hooks import FixedPointCorrectionHook


def test_recipe_spec_reads_the_backbone_recipe_and_the_correction_hook(config_path):
    spec = recipe_spec(config_path('mdeq/fcn_mdeq-tiny-fpc_1xb2-120it_cityscapes-frame-128x256.py'))
    assert spec['backbone']['backward'] == dict(type='phantom', k=5, tau=0.6)
    assert spec['backbone']['forward_solver']['max_iter'] == 12
    assert spec['fixed_point_correction'] == dict(n_states=2, gamma=0.8)
    authors = recipe_spec(config_path('mdeq/fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256.py'))
    assert 'fixed_point_correction' not in authors


def test_a_training_step_with_correction_weights_adds_their_losses(demo_config, monkeypatch):
    torch.manual_seed(0)
    model = build_model(load_config(demo_config), dict(forward_solver=dict(max_iter=4)))
    inputs, samples = make_batch(model, *generated_scenes(2, 64, 128))
    hook = FixedPointCorrectionHook(n_states=2, gamma=0.5)
    find_mdeq(model).deq.trajectory_cfg = hook.trajectory_cfg
    model.train()
    parsed = {}
    parse_losses = model.parse_losses

    def spy(losses):
        parsed.update(losses)
        return parse_losses(losses)

    monkeypatch.setattr(model, 'parse_losses', spy)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = training_step(model, optimizer, inputs, samples, hook.weights)
    keys = sorted(k for k in parsed if k.startswith('fpc'))
    assert keys == ['fpc0.decode.loss_ce', 'fpc1.decode.loss_ce']
    assert loss == pytest.approx(sum(float(v.detach()) for k, v in parsed.items() if "loss" in k),
                                 rel=1e-5)
    parsed.clear()
    training_step(model, optimizer, inputs, samples)
    assert not any(k.startswith('fpc') for k in parsed)
