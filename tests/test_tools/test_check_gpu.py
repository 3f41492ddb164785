"""tools/misc/check_gpu.py on the CPU with tiny inputs: it trains both models and reports."""
import importlib.util
import json
import os.path as osp

import pytest

TOOL = osp.join(osp.dirname(__file__), '..', '..', 'tools', 'misc', 'check_gpu.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('check_gpu', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.mark.slow
def test_cpu_smoke_run_reports_a_training_step_of_both_models(tmp_path):
    report = load_tool().main(['--device', 'cpu', '--precision', 'fp32', '--size', '32', '64',
                               '--batch', '1', '--steps', '1', '--work-dir', str(tmp_path)])
    names = [name for name, _ in report['runs']]
    assert names == ['MDEQ-small (implicit)', 'HRNet-W18']
    for _, run in report['runs']:
        assert run['precision'] == 'fp32' and run['first_step_s'] > 0 and run['median_step_s'] > 0
        assert run['peak_mib'] is None  # not measured on the CPU
    mdeq = report['runs'][0][1]
    assert 1 <= mdeq['fwd_steps'] <= 27 and 1 <= mdeq['bwd_steps'] <= 30
    assert json.load(open(tmp_path / 'report.json'))['machine']['device'] == 'cpu'
    table = (tmp_path / 'report.md').read_text()
    assert '| MDEQ-small (implicit) | fp32 |' in table and '| HRNet-W18 | fp32 |' in table


@pytest.mark.parametrize('argv, message', [
    (['--device', 'cpu', '--precision', 'amp'], 'amp needs a GPU'),
    (['--device', 'cpu', '--precision', 'fp32', '--size', '48', '64'], 'multiples of 32'),
])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        load_tool().parse_args(argv)
    assert message in capsys.readouterr().err
