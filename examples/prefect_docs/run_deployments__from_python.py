# From Prefect 3's documentation, how-to-guides/deployments/run-deployments ("Run a
# deployment from Python"), with the imports changed (`prefect` -> `sdk`). Trimmed for
# a program with no worker: the work pool and the deployment are registered through the
# stores first (the page assumes both exist; `flow.deploy` does that in Stratoflow too),
# and every call returns at once (`timeout=0`): the docs' waiting calls would wait for a
# worker.
from datetime import datetime, timedelta

from runtime.engine.backend import connect_stores
from runtime.models import DeploymentCreate
from runtime.services.work_pools import ensure_work_pool
from sdk.deployments import run_deployment

stores = connect_stores()
ensure_work_pool(stores, "default")
stores.registry.upsert_deployment(
    DeploymentCreate(
        name="my-deployment",
        flow_name="my-flow",
        work_pool_name="default",
        enforce_parameter_schema=False,
    )
)

# With parameters
flow_run = run_deployment(
    name="my-flow/my-deployment",
    parameters={"my_param": 42, "another_param": "hello"},
    timeout=0,
)
print("parameters", flow_run.parameters)

# With job variables (environment variables, etc.)
flow_run = run_deployment(
    name="my-flow/my-deployment",
    parameters={"my_param": 42},
    job_variables={"env": {"MY_ENV_VAR": "production"}},
    timeout=0,
)
print("job variables", flow_run.job_variables)

# Don't wait for completion
flow_run = run_deployment(
    name="my-flow/my-deployment",
    timeout=0,  # returns immediately
)
print("final?", flow_run.state.is_final())

# Schedule for later
flow_run = run_deployment(
    name="my-flow/my-deployment",
    scheduled_time=datetime.now() + timedelta(hours=2),
    timeout=0,
)
print(
    "scheduled",
    flow_run.state.name,
    flow_run.state.details.scheduled_time > datetime.now().astimezone(),
)

# With custom tags
flow_run = run_deployment(
    name="my-flow/my-deployment",
    tags=["production", "critical"],
    timeout=0,
)
print("tags", sorted(flow_run.tags))
# expect: parameters {'my_param': 42, 'another_param': 'hello'}
# expect: job variables {'env': {'MY_ENV_VAR': 'production'}}
# expect: final? False
# expect: scheduled Scheduled True
# expect: tags ['critical', 'production']
