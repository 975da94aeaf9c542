"""The use cases of Stratoflow, one home each, called by every side that needs them.

API routes (``handlers/routes``), the direct engine client
(:class:`runtime.engine.client.DirectEngineClient`), the SDK client's store
backend, and the workers, schedulers and sweeps to come call these functions
instead of repeating their steps. Each takes the :class:`runtime.stores.Stores`
it works on and plain typed arguments, returns models, and raises the domain
errors of :mod:`runtime.errors`; none knows about HTTP. The stores stay data
access only.

* :mod:`runtime.services.flow_runs`: create a flow run and record its flow,
  propose a state, cancel;
* :mod:`runtime.services.task_runs`: create a task run, record a batch of
  task-run snapshots;
* :mod:`runtime.services.deployments`: upsert, update and run a deployment
  (running one creates the flow run and sends it to its pool's queue);
* :mod:`runtime.services.dispatch`: send a flow run to its work pool's SQS queue
  (once), and the sweep's sending of runs that became due;
* :mod:`runtime.services.claims`: a worker claims a received run (one start,
  pool/deployment pause, concurrency leases with ENQUEUE / CANCEL_NEW);
* :mod:`runtime.services.work_pools`: create (with its queues), inspect, pause,
  resume and delete a work pool;
* :mod:`runtime.services.pages`: read one page of a listing (runs, logs,
  flows, deployments, work pools);
* :mod:`runtime.services.references` and :mod:`runtime.services.transitions`:
  what they share (a reference must exist; a refused transition as an error).
"""
