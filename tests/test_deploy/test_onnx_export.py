"""Fixed-budget ONNX export: ONNX Runtime gives PyTorch's logits, and what cannot be exported is
refused with the reason."""
import mmcv
import pytest
import torch

from mdeq_mm.analysis import generated_scenes, to_inputs
from mdeq_mm.deploy import check_exportable, compare_with_pytorch, export_onnx, run_onnx

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

# ONNX Runtime's float32 kernels against PyTorch's: differences of float rounding only
RTOL = 1e-4
BUDGET = 6
SEG_SIZE = (32, 64)


@pytest.fixture(scope='module')
def exported_segmentor(tiny_segmentor, tmp_path_factory):
    """The tiny segmentor and its file, exported at BUDGET with a free batch dimension."""
    model = tiny_segmentor()
    path = str(tmp_path_factory.mktemp('onnx') / 'segmentor.onnx')
    export_onnx(model, path, (1, 3, *SEG_SIZE), BUDGET, dynamic_batch=True)
    return model, path


@pytest.mark.parametrize('batch', [1, 3])
def test_exported_segmentor_gives_pytorch_logits_on_generated_scenes(exported_segmentor, batch):
    model, path = exported_segmentor
    inputs = to_inputs(model, generated_scenes(batch, *SEG_SIZE)[0])
    diff = compare_with_pytorch(path, model, inputs, BUDGET)
    assert diff['max_rel'] < RTOL, diff
    assert run_onnx(path, inputs).shape == (batch, 19, SEG_SIZE[0] // 4, SEG_SIZE[1] // 4)


def test_exported_segmentor_gives_pytorch_logits_on_the_real_frame(exported_segmentor,
                                                                    cityscapes_frame):
    model, path = exported_segmentor
    image = mmcv.imresize(cityscapes_frame, SEG_SIZE[::-1])
    diff = compare_with_pytorch(path, model, to_inputs(model, image[None]), BUDGET)
    assert diff['max_rel'] < RTOL, diff


def test_exported_budget_is_the_budget_not_the_configured_one(exported_segmentor):
    model, path = exported_segmentor
    inputs = to_inputs(model, generated_scenes(1, *SEG_SIZE)[0])
    other = compare_with_pytorch(path, model, inputs, BUDGET - 4)
    assert other['max_rel'] > 100 * RTOL


@pytest.mark.parametrize('solver', ['broyden', 'anderson', 'fixed_point'])
def test_exported_classifier_gives_pytorch_scores(tiny_classifier, tmp_path, solver):
    model = tiny_classifier(solver)
    path = str(tmp_path / 'classifier.onnx')
    export_onnx(model, path, (2, 3, 16, 16), BUDGET)
    inputs = to_inputs(model, generated_scenes(2, 16, 16)[0])
    diff = compare_with_pytorch(path, model, inputs, BUDGET)
    assert diff['max_rel'] < RTOL, diff
    assert run_onnx(path, inputs).shape == (2, 10)


def test_exported_learned_start_is_the_initializers_prediction(tiny_classifier, tmp_path):
    model = tiny_classifier(initializer=dict(type='MDEQInitializer'))
    initializer = model.backbone.initializer
    torch.manual_seed(1)
    for norm in initializer.norms:  # an untrained one predicts zeros: make it predict something
        torch.nn.init.normal_(norm.weight, std=0.5)
        torch.nn.init.normal_(norm.bias, std=0.5)
    path = str(tmp_path / 'learned.onnx')
    export_onnx(model, path, (2, 3, 16, 16), BUDGET)
    inputs = to_inputs(model, generated_scenes(2, 16, 16)[0])
    diff = compare_with_pytorch(path, model, inputs, BUDGET)
    assert diff['max_rel'] < RTOL, diff
    model.backbone.initializer = None  # the cold start gives other scores at this budget
    assert compare_with_pytorch(path, model, inputs, BUDGET)['max_rel'] > 10 * RTOL


def test_what_cannot_be_exported_is_refused_with_the_reason(tiny_segmentor, tiny_classifier):
    model = tiny_segmentor()
    with pytest.raises(ValueError, match='budget must be an int >= 1.*got 0'):
        check_exportable(model, (1, 3, 32, 64), 0)
    with pytest.raises(ValueError, match='divisible by the backbone stride 8, got 36x64'):
        check_exportable(model, (1, 3, 36, 64), 4)
    model.test_cfg = dict(mode='slide', crop_size=(32, 32), stride=(16, 16))
    with pytest.raises(ValueError, match="test_cfg mode 'slide'.*model.test_cfg.mode=whole"):
        check_exportable(model, (1, 3, 32, 64), 4)
    with pytest.raises(ValueError, match='training mode: call model.eval'):
        check_exportable(tiny_classifier().train(), (1, 3, 16, 16), 4)
    with pytest.raises(ValueError, match='dynamic_batch needs the TorchScript exporter'):
        export_onnx(tiny_classifier(), 'unused.onnx', (1, 3, 16, 16), 4, dynamic_batch=True,
                    dynamo=True)
    plain = torch.nn.Module()
    plain.backbone = torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match='backbone is an MDEQ, got Module with backbone Conv2d'):
        check_exportable(plain.eval(), (1, 3, 16, 16), 4)


@pytest.mark.slow
def test_tool_exports_checks_and_refuses_free_height(run_tool, demo_config, tmp_path):
    out = str(tmp_path / 'demo.onnx')
    output = run_tool(['tools/deployment/pytorch2onnx.py', demo_config, '--budget', '3',
                       '--shape', '32', '64', '--dynamic', 'batch', '--output-file', out])
    assert 'ONNX Runtime vs PyTorch, batch 2: max abs difference' in output
    output = run_tool(['tools/deployment/pytorch2onnx.py', demo_config, '--shape', '32', '64',
                       '--dynamic', 'height', '--output-file', out], succeed=False)
    assert '--dynamic height: not supported' in output
