# From Prefect 3's documentation ("Test workflows": test the underlying function with
# `.fn()`, and `disable_run_logger()` for a task that logs), with only the imports
# changed (`prefect` -> `sdk`). `logging_task` stands for the docs' "my_task" that calls
# get_run_logger(). The last two lines run this file under pytest.
from sdk import flow, task
from sdk import get_run_logger
from sdk.exceptions import MissingContextError
from sdk.logging import disable_run_logger
import pytest

@task
def my_favorite_task():
    return 42

@flow
def my_favorite_flow():
    val = my_favorite_task()
    return val

def test_my_favorite_task():
    assert my_favorite_task.fn() == 42


@task
def logging_task():
    get_run_logger().info("hello")
    return 42


def test_task_with_logging():
    with disable_run_logger():
        result = logging_task.fn()
    assert result == 42


def test_task_with_logging_outside_a_run_raises():
    with pytest.raises(MissingContextError):
        logging_task.fn()


if __name__ == "__main__":
    import sys; sys.exit(pytest.main([__file__, "-p", "no:cacheprovider"]))
# expect: 3 passed
