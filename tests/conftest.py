"""Shared pytest configuration for the whole suite."""
import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: end-to-end Runner / multi-process runs (deselect with -m "not slow")')


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny ops are dominated by thread hand-off; on a busy machine one thread is far faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
