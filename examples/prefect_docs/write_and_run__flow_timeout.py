# From Prefect 3's documentation ("Write and run flows": timeouts), with only the import
# changed: `from prefect import flow` -> `from sdk import flow`. The docs define the flow;
# the call at the end is added. The flow run ends TimedOut and the call raises, so the
# program exits 1; "I will not execute" is never printed.
from sdk import flow
import time

@flow(timeout_seconds=1, log_prints=True)
def show_timeouts():
    print("I will execute")
    time.sleep(5)
    print("I will not execute")


show_timeouts()
# expect-exit: 1
# expect-stderr: I will execute
# expect-stderr: Finished in state TimedOut
