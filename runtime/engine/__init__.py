"""The flow and task engines: run decorated functions and record every run and state.

The public decorators (``sdk.flow``, ``sdk.task``) are defined here and
re-exported by ``sdk``; the engine writes through an :class:`EngineClient`
(direct stores, or the HTTP API), so every path runs the same rules.
"""

from runtime.engine.results import state_result
from runtime.states import register_result_loader

# ``State.result()`` loads through the engine: registered here, on the engine's first
# import, so ``runtime.states`` never imports the engine (the one declared exception
# to the layering, enforced by the import-linter contracts in .importlinter).
register_result_loader(state_result)
