"""The flow ``examples/deploy_demo.py`` deploys: its directory is the code bundle a worker runs."""

from __future__ import annotations

import os
import time

from sdk import flow, get_run_logger, task


@task(retries=1, retry_delay_seconds=0.1)
def price(item: str, quantity: int) -> float:
    """Look up a price (pretend: a short wait)."""
    time.sleep(0.2)
    return round(quantity * (1.5 + len(item) / 10), 2)


@flow(name="invoice")
def invoice(customer: str, items: dict[str, int], currency: str = "EUR") -> str:
    """Price each item and total the invoice; runs in a worker's child process."""
    logger = get_run_logger()
    logger.info("pricing %s items for %s in process %s", len(items), customer, os.getpid())
    total = sum(price(item, quantity) for item, quantity in items.items())
    return f"{customer}: {total:.2f} {currency}"
