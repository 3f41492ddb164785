"""Installing mdeq_mm keeps the torch, torchvision and mmcv that a user already has, and the
installed wheel is usable on its own: configs by `mdeq_mm::` paths, models by name."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import sysconfig
import zipfile

import pytest

# builds virtual environments and a wheel, runs a user's script: about two minutes
pytestmark = pytest.mark.slow
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# A GPU user's environment: torch 2.1 with OpenMMLab's prebuilt mmcv 2.1.0 and the toolboxes.
USER_ENV = {
    'torch': '2.1.0', 'torchvision': '0.16.0', 'mmcv': '2.1.0', 'mmengine': '0.10.7',
    'mmsegmentation': '1.2.2', 'mmpretrain': '1.2.0', 'numpy': '1.26.4', 'ftfy': '6.1.1',
    'regex': '2023.10.3'
}
KEPT = ('torch', 'torchvision', 'mmcv')


def add_installed_distribution(site_packages, name, version):
    """Metadata that makes pip see ``name==version`` as installed (no code, no dependencies)."""
    dist_info = osp.join(site_packages, f'{name}-{version}.dist-info')
    files = {'METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n',
             'INSTALLER': 'pip\n'}
    files['RECORD'] = ''.join(f'{name}-{version}.dist-info/{f},,\n' for f in [*files, 'RECORD'])
    os.makedirs(dist_info)
    for filename, text in files.items():
        with open(osp.join(dist_info, filename), 'w', encoding='utf-8') as f:
            f.write(text)


@pytest.fixture(scope='module')
def user_python(tmp_path_factory):
    """A virtual environment with pip that 'has' the packages of USER_ENV."""
    venv = tmp_path_factory.mktemp('user_env')
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    python = osp.join(venv, 'bin', 'python')
    site_packages = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
        check=True, capture_output=True, text=True).stdout.strip()
    assert site_packages != sysconfig.get_path('purelib')
    for name, version in USER_ENV.items():
        add_installed_distribution(site_packages, name, version)
    return python


@pytest.fixture(scope='module')
def package_wheel(tmp_path_factory):
    """This package as a wheel, built offline with the test environment's setuptools."""
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-index',
                    '--no-build-isolation', '--quiet', REPO, '-w', str(out)], check=True)
    (wheel, ) = out.glob('mdeq_mm-*.whl')
    return str(wheel)


def user_env():
    """The environment of a user's shell: no PYTHONPATH (the source tree is not importable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('PIP_') and k != 'PYTHONPATH'}
    return dict(env, PIP_CONFIG_FILE=os.devnull, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
                PYTHONWARNINGS='ignore')


def plan(python, tmp_path, *requirements):
    """pip's resolution of ``requirements`` in that environment, offline; returns the report.

    No pip configuration and no PYTHONPATH: pip sees only that environment and installs from
    nothing but what it is given.
    """
    report = tmp_path / 'report.json'
    proc = subprocess.run(
        [python, '-m', 'pip', 'install', '--dry-run', '--no-index', '--disable-pip-version-check',
         '--quiet', '--report', str(report), *requirements],
        capture_output=True, text=True, cwd=tmp_path, env=user_env())
    return proc, json.loads(report.read_text()) if proc.returncode == 0 else None


def test_installing_the_package_plans_no_change_to_torch_torchvision_or_mmcv(
        user_python, package_wheel, tmp_path):
    proc, report = plan(user_python, tmp_path, package_wheel)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    planned = {item['metadata']['name'].lower().replace('_', '-') for item in report['install']}
    assert planned == {'mdeq-mm'}, planned
    assert not planned & set(KEPT)


def test_the_pinned_set_would_replace_torch(user_python, tmp_path):
    """Why the pinned set is a constraints file, not install_requires: it asks for torch 2.14."""
    proc, _ = plan(user_python, tmp_path, '-r', osp.join(REPO, 'requirements', 'pinned.txt'))
    assert proc.returncode != 0
    assert 'torch==2.14.1' in proc.stdout + proc.stderr


# What a user of the installed wheel runs, from a folder of their own: their configs inherit ours
# by `mdeq_mm::` paths, a stock toolbox tool builds the runner, mmpretrain finds our models by name.
USER_CONFIGS = {
    'classifier.py': "_base_ = ['mdeq_mm::mdeq/mdeq-tiny_1xb32-300it_digits-16x16.py']\n"
    "data_root = 'digits'\n"
    "train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))\n",
    'segmentor.py':
    "_base_ = ['mdeq_mm::mdeq/fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256.py']\n",
    'runtime_only.py': "_base_ = ['mdeq_mm::_base_/mdeq_runtime.py']\n",
}
USER_SCRIPT = '''
import json, sys
from mmengine.config import Config
report = {}
cfg = Config.fromfile('runtime_only.py', import_custom_modules=False)
report['runtime_hooks'] = [hook['type'] for hook in cfg.custom_hooks]
cfg = Config.fromfile('classifier.py', import_custom_modules=False)
report['classifier_backbone'] = cfg.model.backbone.type
report['imported_before_building'] = 'mdeq_mm' in sys.modules

import mdeq_mm
report['mdeq_mm_file'] = mdeq_mm.__file__
from mmpretrain import get_model, inference_model, list_models
import numpy as np, torch
report['listed'] = list_models('*mdeq*')
model = get_model('mdeq-tiny_1xb32-300it_digits-16x16')
torch.save({'state_dict': model.state_dict()}, 'digits.pth')
image = np.zeros((16, 16, 3), dtype=np.uint8)
result = inference_model('mdeq-tiny_1xb32-300it_digits-16x16', image, pretrained='digits.pth')
report['inference'] = sorted(result)
report['classifiers'] = list_models('*mdeq*', task='Image Classification')

from mmengine.registry import RUNNERS
from mmengine.runner import Runner
for name in ('classifier.py', 'segmentor.py'):
    # as mmseg's and mmpretrain's tools/train.py do (a runner sets its default scope)
    cfg = Config.fromfile(name)
    cfg.work_dir = 'work_dirs/' + name
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    report[name] = type(runner.model).__name__
    if name == 'classifier.py':
        report['train_images'] = len(runner.build_dataloader(cfg.train_dataloader).dataset)

# mmseg's inferencer takes no name of ours (see mdeq_mm.model_index.config_file): the config path
from mmseg.apis import MMSegInferencer
from mdeq_mm.model_index import config_file
seg = MMSegInferencer(
    config_file('fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256'), device='cpu')
report['seg_inferencer'] = type(seg.model).__name__
print(json.dumps(report))
'''


@pytest.fixture(scope='module')
def installed_python(tmp_path_factory, package_wheel):
    """A fresh virtual environment with the wheel installed, seeing the test environment's packages.

    The test environment's site-packages is added as a plain path (its .pth files, such as an
    editable install of this package, are not run); the wheel's own copy comes first.
    """
    venv = tmp_path_factory.mktemp('installed_env')
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    python = osp.join(venv, 'bin', 'python')
    env = user_env()
    site_packages = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'], env=env,
        check=True, capture_output=True, text=True).stdout.strip()
    test_paths = dict.fromkeys(sysconfig.get_path(key) for key in ('purelib', 'platlib'))
    with open(osp.join(site_packages, 'test-environment.pth'), 'w', encoding='utf-8') as f:
        f.write(''.join(f'{path}\n' for path in test_paths))
    # the test environment's pip, installing into the new environment
    subprocess.run([python, '-m', 'pip', 'install', '--no-deps', '--no-index', '--ignore-installed',
                    '--disable-pip-version-check', '--quiet', package_wheel],
                   env=env, check=True, cwd=venv)
    return python


def write_digits_folders(root):
    """Two 16x16 images per class in mmpretrain's CustomDataset layout."""
    from PIL import Image
    for split in ('train', 'test'):
        for label in range(10):
            folder = osp.join(root, split, str(label))
            os.makedirs(folder)
            for index in range(2):
                image = Image.new('RGB', (16, 16), (25 * label, ) * 3)
                image.save(osp.join(folder, f'{index}.png'))


@pytest.fixture(scope='module')
def user_report(installed_python, tmp_path_factory):
    """What USER_SCRIPT finds, run in a user's folder with the installed wheel."""
    folder = tmp_path_factory.mktemp('user_folder')
    for name, text in USER_CONFIGS.items():
        (folder / name).write_text(text)
    write_digits_folders(str(folder / 'digits'))
    proc = subprocess.run([installed_python, '-c', USER_SCRIPT], cwd=folder, env=user_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def wheel_from_sdist(tmp_path_factory):
    """A wheel built from this package's source distribution, as pip builds one from PyPI."""
    out = tmp_path_factory.mktemp('sdist')
    subprocess.run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(out)], cwd=REPO,
                   check=True, capture_output=True)
    (sdist, ) = out.glob('mdeq_mm-*.tar.gz')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-index',
                    '--no-build-isolation', '--quiet', str(sdist), '-w', str(out)], check=True)
    (wheel, ) = out.glob('mdeq_mm-*.whl')
    return str(wheel)


def wheel_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if '.dist-info/' not in name}


def test_a_wheel_from_the_sdist_has_the_same_files(package_wheel, wheel_from_sdist):
    assert wheel_files(wheel_from_sdist) == wheel_files(package_wheel)


def test_the_wheel_ships_every_config_the_model_index_and_the_startup_hook(package_wheel):
    names = wheel_files(package_wheel)
    configs = {f'mdeq_mm/.mim/{osp.relpath(path, REPO)}'
               for path in glob.glob(osp.join(REPO, 'configs', '**', '*.*'), recursive=True)
               if path.endswith(('.py', '.yaml'))}
    assert configs <= names, sorted(configs - names)
    assert {'mdeq_mm/.mim/model-index.yml', 'mdeq_mm-config-scope.pth',
            '_mdeq_mm_config_scope.py'} <= names


def test_python_startup_installs_the_hook_without_importing_mmengine(installed_python, tmp_path):
    code = ('import sys; '
            'print(sorted(m for m in sys.modules if m.startswith(("mm", "_mdeq", "torch"))))')
    proc = subprocess.run([installed_python, '-c', code], cwd=tmp_path, env=user_env(),
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "['_mdeq_mm_config_scope']"


def test_a_user_config_inherits_our_configs_before_mdeq_mm_is_imported(user_report):
    assert user_report['runtime_hooks'] == ['DEQWarmupHook', 'DEQSolverStatsHook']
    assert user_report['classifier_backbone'] == 'MDEQ'
    assert not user_report['imported_before_building']


def test_the_stock_tools_runner_builds_from_an_inherited_config(user_report, installed_python):
    assert user_report['classifier.py'] == 'ImageClassifier'
    assert user_report['segmentor.py'] == 'EncoderDecoder'
    assert user_report['seg_inferencer'] == 'EncoderDecoder'
    assert user_report['train_images'] == 20
    # the wheel's copy, not the source tree's
    assert user_report['mdeq_mm_file'].startswith(osp.dirname(osp.dirname(installed_python)))


def test_mmpretrain_finds_builds_and_runs_our_classifiers_by_name(user_report):
    assert 'mdeq-tiny_1xb32-300it_digits-16x16' in user_report['listed']
    assert 'mdeq-small_4xb32_in1k' in user_report['listed']
    assert not [name for name in user_report['listed'] if name.startswith('fcn_')]
    assert user_report['inference'] == ['pred_label', 'pred_score', 'pred_scores']
    assert user_report['classifiers'] == user_report['listed']
