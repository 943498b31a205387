"""Integration fixtures: the real services, a database made by the migrations, and a real
``python worker.py`` subprocess on a queue of its own (see support.py)."""
import pytest

from integration.support import Stack, start_services


@pytest.fixture(scope="session")
def services():
    try:
        return start_services()
    except Exception as exc:  # setup that fails is a failure, never a skip
        pytest.fail(f"The integration services could not be started: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def stack(services, tmp_path_factory):
    stack = Stack(workdir=tmp_path_factory.mktemp("integration"), services=services)
    try:
        stack.start()
    except Exception as exc:
        stack.stop()
        pytest.fail(f"The integration stack could not be started: {exc}", pytrace=False)
    yield stack
    stack.stop()
