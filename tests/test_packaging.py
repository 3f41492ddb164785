"""Installing mdeq_mm keeps the torch, torchvision and mmcv that a user already has."""
import json
import os
import os.path as osp
import subprocess
import sys
import sysconfig

import pytest

# builds a virtual environment and a wheel: about half a minute
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


def plan(python, tmp_path, *requirements):
    """pip's resolution of ``requirements`` in that environment, offline; returns the report.

    No pip configuration and no PYTHONPATH: pip sees only that environment and installs from
    nothing but what it is given.
    """
    report = tmp_path / 'report.json'
    env = {k: v for k, v in os.environ.items() if not k.startswith('PIP_') and k != 'PYTHONPATH'}
    proc = subprocess.run(
        [python, '-m', 'pip', 'install', '--dry-run', '--no-index', '--disable-pip-version-check',
         '--quiet', '--report', str(report), *requirements],
        capture_output=True, text=True, cwd=tmp_path, env=dict(env, PIP_CONFIG_FILE=os.devnull))
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
