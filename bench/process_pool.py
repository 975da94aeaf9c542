"""ProcessPoolTaskRunner against ThreadPoolTaskRunner: prints figures, asserts nothing.

    .venv/bin/python bench/process_pool.py [--tasks 40] [--workers 2] [--repeat 3]

On the embedded default (a moto server in this process, reached by the workers
over 127.0.0.1). Each case is a fresh flow run submitting ``--tasks`` trivial
task runs and reading every result; medians over ``--repeat`` flow runs:

* first task:  seconds from the flow's start to its first task's result (a
               process pool starts a worker then: interpreter, imports, clients);
* per task:    seconds per task run once the workers are up;
* flow run:    the whole flow call, ``--tasks`` task runs, including the start
               and the end (a process pool's workers exit with the flow run);
* cpu-bound:   ``--workers`` task runs each summing squares for about a second
               of CPU: the speed-up of processes over threads (the GIL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sdk import flow, task
from sdk.futures import wait
from sdk.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner


@task
def inc(x: int) -> int:
    return x + 1


@task
def nap(seconds: float) -> None:
    time.sleep(seconds)  # one per worker at once: every worker is started before timing


@task
def burn(n: int) -> int:
    return sum(i * i for i in range(n))


def make_flow(runner: Any, tasks: int) -> Callable[[], dict[str, float]]:
    @flow(task_runner=runner)
    def trivial_tasks() -> dict[str, float]:
        start = time.perf_counter()
        inc.submit(0).result()
        first = time.perf_counter() - start
        start = time.perf_counter()
        results = [f.result() for f in [inc.submit(i) for i in range(tasks)]]
        assert results == [i + 1 for i in range(tasks)]
        return {"first": first, "per_task": (time.perf_counter() - start) / tasks}

    return trivial_tasks


def make_cpu_flow(runner: Any, workers: int, n: int) -> Callable[[], float]:
    @flow(task_runner=runner)
    def cpu_bound() -> float:
        wait(burn.map([0] * workers, wait_for=[nap.submit(0.5) for _ in range(workers)]))
        start = time.perf_counter()
        [f.result() for f in burn.map([n] * workers)]
        return time.perf_counter() - start

    return cpu_bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--burn", type=int, default=4_000_000, help="squares summed per task")
    args = parser.parse_args()
    print(
        f"{args.tasks} trivial task runs per flow run, {args.workers} workers, "
        f"medians of {args.repeat}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    runners = {
        "threads": lambda: ThreadPoolTaskRunner(max_workers=args.workers),
        "processes": lambda: ProcessPoolTaskRunner(max_workers=args.workers),
    }
    for name, runner in runners.items():
        firsts, per_task, totals, cpu = [], [], [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            figures = make_flow(runner(), args.tasks)()
            totals.append(time.perf_counter() - start)
            firsts.append(figures["first"])
            per_task.append(figures["per_task"])
            cpu.append(make_cpu_flow(runner(), args.workers, args.burn)())
        print(
            f"{name:>9}: first task {statistics.median(firsts):7.3f} s | "
            f"per task {statistics.median(per_task) * 1000:7.2f} ms | "
            f"flow run {statistics.median(totals):7.3f} s | "
            f"cpu-bound x{args.workers} {statistics.median(cpu):6.2f} s"
        )


if __name__ == "__main__":
    main()
