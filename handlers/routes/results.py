"""Routes (being written)."""

from aws_lambda_powertools.event_handler.router import Router

router = Router()
