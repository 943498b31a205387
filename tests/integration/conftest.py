"""Integration fixtures: the real services, a database made by the migrations, and a real
``python worker.py`` subprocess on a queue of its own (see support.py)."""
import pytest

from integration.support import running_stack, start_services


@pytest.fixture(scope="session")
def services():
    try:
        return start_services()
    except Exception as exc:  # setup that fails is a failure, never a skip
        pytest.fail(f"The integration services could not be started: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def stack(services, tmp_path_factory):
    with running_stack(services, tmp_path_factory.mktemp("integration")) as stack:
        yield stack
