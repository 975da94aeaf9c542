"""The flow and task engines: run decorated functions and record every run and state.

The public decorators (``sdk.flow``, ``sdk.task``) are defined here and
re-exported by ``sdk``; the engine writes through an :class:`EngineClient`
(direct stores, or the HTTP API), so every path runs the same rules.
"""
