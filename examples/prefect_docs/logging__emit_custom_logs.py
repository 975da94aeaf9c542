# From Prefect 3's documentation ("Add logging": emit custom logs), with only the
# imports changed (`prefect` -> `sdk`). The docs define the flow; the call is added.
from sdk import flow, task
from sdk.logging import get_run_logger

@task(name="log-example-task")
def logger_task():
    # this logger instance will emit logs 
    # associated with both the flow run *and* the individual task run
    logger = get_run_logger()
    logger.info("INFO level log message from a task.")
    logger.debug("DEBUG level log message from a task.")

@flow(name="log-example-flow")
def logger_flow():
    # this logger instance will emit logs
    # associated with the flow run only
    logger = get_run_logger()
    logger.info("INFO level log message.")
    logger.debug("DEBUG level log message.")
    logger.error("ERROR level log message.")
    logger.critical("CRITICAL level log message.")
    logger_task()


logger_flow()
# expect-stderr: INFO level log message from a task.
# expect-stderr: ERROR level log message.
# expect-stderr: CRITICAL level log message.
