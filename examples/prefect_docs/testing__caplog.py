# From Prefect 3's documentation ("Test workflows": capture log output in tests), with
# only the imports changed (`prefect` -> `sdk`). The last two lines run this file under
# pytest, as `pytest testing__caplog.py` would.
import logging
from typing import Any

import pytest
from sdk import flow, get_run_logger, task
from sdk.testing.utilities import prefect_test_harness


@task
def log_message() -> None:
    logger = get_run_logger()
    logger.info("Logging from task")


@flow
def parent_flow() -> None:
    logger = get_run_logger()
    logger.info("Logging from flow")
    log_message()


@pytest.fixture(autouse=True, scope="session")
def prefect_test_fixture():
    with prefect_test_harness():
        yield


def test_flow_log_message(caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    parent_flow()

    assert "Logging from flow" in caplog.messages


def test_task_log_message(caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    parent_flow()

    assert "Logging from task" in caplog.messages


if __name__ == "__main__":
    import sys; sys.exit(pytest.main([__file__, "-p", "no:cacheprovider"]))
# expect: 2 passed
