"""Thin Lambda entry points (the API, and later the schedule, automation and sweep targets).

Handlers parse, validate and map errors; the logic lives in ``runtime``. Keep
module import light: heavy imports (boto3, the stores) happen on first use.
"""
