"""Background tasks: ``task.delay()`` / ``apply_async()`` and the task workers that run them.

Inside the engine package because ``Task.delay`` calls it (runtime's subpackages
form no import cycle).

``submit`` creates the task run (SCHEDULED, its parameters persisted as an
authenticated payload) and sends it to the installation's task-run queue;
``worker`` long-polls that queue, claims each run with one conditional transition
and runs it with the task engine; ``futures`` waits for a run's final state from
any process.
"""
