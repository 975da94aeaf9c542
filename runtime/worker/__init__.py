"""The worker: long-polls a work pool's SQS queue and executes its flow runs in child processes.

* :mod:`runtime.worker.code` finds a deployment's code and loads its flow;
* :mod:`runtime.worker.child` is the child process that executes one claimed run;
* :mod:`runtime.worker.runner` starts, watches and stops such a child;
* :mod:`runtime.worker.worker` is the poll loop (claims, heartbeats, cancellation,
  shutdown), :mod:`runtime.worker.registration` what ``stratoflow worker ls`` shows.

This package imports nothing heavy at import time: the child starts lean.
"""
