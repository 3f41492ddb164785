"""Shared pytest configuration for the whole suite."""
import pytest
import torch


NO_CUDA = 'needs a CUDA GPU; torch.cuda.is_available() is False here (tools/check_gpu.sh runs them)'


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: end-to-end Runner / multi-process runs (deselect with -m "not slow")')
    config.addinivalue_line(
        'markers', 'cuda: needs a CUDA GPU; runs when torch sees one, skipped otherwise '
        '(select with -m cuda)')


def pytest_collection_modifyitems(config, items):
    """Skip the ``cuda`` tests, with the reason, where no GPU is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny ops are dominated by thread hand-off; on a busy machine one thread is far faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
