# From Prefect 3's documentation ("Test workflows": the harness as a session-scoped
# pytest fixture), with only the imports changed (`prefect` -> `sdk`). The last two lines
# run this file under pytest, as `pytest testing__session_fixture.py` would.
from sdk import flow
import pytest
from sdk.testing.utilities import prefect_test_harness

@pytest.fixture(autouse=True, scope="session")
def prefect_test_fixture():
    with prefect_test_harness():
        yield

@flow
def my_favorite_flow():
    return 42

def test_my_favorite_flow():
    assert my_favorite_flow() == 42


if __name__ == "__main__":
    import sys; sys.exit(pytest.main([__file__, "-p", "no:cacheprovider"]))
# expect: 1 passed
