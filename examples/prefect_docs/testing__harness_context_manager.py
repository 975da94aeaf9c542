# From Prefect 3's documentation ("Test workflows": the harness as a context manager),
# with only the imports changed (`prefect` -> `sdk`). The last two lines run this file
# under pytest, as `pytest testing__harness_context_manager.py` would.
from sdk import flow
from sdk.testing.utilities import prefect_test_harness

@flow
def my_favorite_flow():
    return 42

def test_my_favorite_flow():
  with prefect_test_harness():
      # run the flow against a temporary testing database
      assert my_favorite_flow() == 42


if __name__ == "__main__":
    import sys, pytest; sys.exit(pytest.main([__file__, "-p", "no:cacheprovider"]))
# expect: 1 passed
