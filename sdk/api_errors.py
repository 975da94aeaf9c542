"""The HTTP API's typed errors (``sdk.api_errors``), raised by ``sdk.http_client.StratoflowClient``.

Each one subclasses the matching ``runtime.errors`` class where there is one, so
callers may catch either: ``except sdk.api_errors.NotFound`` or
``except runtime.errors.NotFound`` both catch a 404.

=====================  ========================  =====================================
class                  also a                    response
=====================  ========================  =====================================
``ApiError``           ``StratoflowError``       any error (``status``, ``type``,
                                                 ``message``, ``details``)
``NotFound``           ``errors.NotFound``       404
``ResultNotFound``     ``ResultNotFound``        404 ``result_not_found``
``AlreadyExists``      ``errors.AlreadyExists``  409 ``already_exists``
``Conflict``           ``errors.Conflict``       409 ``conflict``
``CacheLockLost``      ``CacheLockLost``         409 on ``PUT /cache/{key}``
``TransitionRejected`` ``TransitionRejected``    409 ``transition_rejected`` (``.state``,
                                                 ``.result``)
``ValidationError``    ``errors.InvalidInput``   422 (``.field``, ``.loc``, ``.errors``)
``BadRequest``         ``errors.BadRequest``     400
``Unauthorized``                                 401 / 403
``Throttled``                                    429 ``throttled`` after every retry
``LimitExceeded``      ``errors.LimitExceeded``  429 ``limit_exceeded`` (never retried)
``ServerError``                                  5xx after every retry
``ApiConnectionError``                           no response after every retry
=====================  ========================  =====================================
"""

from runtime.http.errors import (
    AlreadyExists,
    ApiConnectionError,
    ApiError,
    BadRequest,
    CacheLockLost,
    Conflict,
    LimitExceeded,
    NotFound,
    ResultNotFound,
    ServerError,
    Throttled,
    TransitionRejected,
    Unauthorized,
    ValidationError,
    error_from_response,
)

__all__ = [
    "AlreadyExists",
    "ApiConnectionError",
    "ApiError",
    "BadRequest",
    "CacheLockLost",
    "Conflict",
    "LimitExceeded",
    "NotFound",
    "ResultNotFound",
    "ServerError",
    "Throttled",
    "TransitionRejected",
    "Unauthorized",
    "ValidationError",
    "error_from_response",
]
