"""Stratoflow's core: models, states and orchestration rules, resource specs and AWS stores.

Everything every side shares lives here: the SDK, the Lambda handlers and the CDK
stack all import from ``runtime`` and never from each other.
"""
