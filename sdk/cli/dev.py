"""``stratoflow dev``: the whole local stack in one command.

A moto server on 127.0.0.1:4201 (atomic DynamoDB, :class:`runtime.localaws.LockedMotoServer`),
or the endpoint already in ``AWS_ENDPOINT_URL`` (LocalStack), provisioned from the
resource specs; the local API on 127.0.0.1:4200; then every background service of
:data:`sdk.cli._stack.DEV_SERVICES` (the maintenance sweep loop) and the workers of
``--worker POOL`` (:func:`sdk.cli._stack.worker_services`). Prints the environment
other shells export (never a secret: credentials and the API token from this shell are named, not
printed), and shuts everything down in reverse order on Ctrl-C or SIGTERM (exit 0).

The ports are fixed by default so that an exported environment stays valid across
restarts; ``--state-dir DIR`` keeps moto's state in ``DIR`` across restarts too
(:class:`runtime.localaws.MotoStateFile`). Without it the stack is ephemeral.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from sdk.cli import _stack
from sdk.cli._output import error, fail, say, usage_error

PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,30}$")

#: Credentials the local stack uses when none are set (moto accepts anything).
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

#: Default ports: the API on 4200 (Prefect's), moto on 4201 (LocalStack owns 4566).
DEFAULT_API_PORT = 4200
DEFAULT_MOTO_PORT = 4201

#: The variables printed for other shells, in this order.
EXPORTED = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "STRATOFLOW_PREFIX",
    "STRATOFLOW_API_URL",
)

#: Credentials taken from the user's environment: named in the output, never printed.
CREDENTIAL_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def check_prefix(prefix: str) -> str:
    """The prefix, or a usage error naming the accepted pattern."""
    if not PREFIX_PATTERN.match(prefix):
        usage_error(
            f"invalid prefix {prefix!r}: 2-31 characters, lowercase letters, digits and '-', "
            "starting with a letter"
        )
    return prefix


def export_line(env: dict[str, str], withheld: frozenset[str] = frozenset()) -> str:
    """``export A=1 B=2`` (shell-quoted), the line other shells run; ``withheld`` left out."""
    parts = [
        f"{name}={shlex.quote(env[name])}"
        for name in EXPORTED
        if env.get(name) and name not in withheld
    ]
    return "export " + " ".join(parts)


def withheld_notes(withheld: frozenset[str], token: bool) -> list[str]:
    """The lines that name, without printing, what other shells need besides the export."""
    notes: list[str] = []
    credentials = [name for name in CREDENTIAL_NAMES if name in withheld]
    if credentials:
        notes.append(
            f"AWS credentials: the ones in this shell's {' / '.join(credentials)} "
            "(not printed); other shells need the same."
        )
    if token:
        notes.append(
            "API token: required on every request; set STRATOFLOW_API_TOKEN in other "
            "shells to the token this stack was given (not printed)."
        )
    return notes


def aws_environment(endpoint: str, *, own_server: bool) -> tuple[dict[str, str], frozenset[str]]:
    """The AWS variables of the stack, and the names of those that must not be printed.

    Our own moto server gets moto's fake ``testing`` credentials (not secrets). For an
    endpoint given in ``AWS_ENDPOINT_URL`` (LocalStack), credentials and region already
    set are kept, and withheld from the output; LocalStack's conventional ``test``
    credentials are used (and may be printed) when none are set.
    """
    if own_server:
        env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
        return env, frozenset()
    withheld = frozenset(name for name in CREDENTIAL_NAMES if os.environ.get(name))
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID") or "test",
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY") or "test",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    if "AWS_ACCESS_KEY_ID" in withheld or "AWS_SECRET_ACCESS_KEY" in withheld:
        # A pair is printed whole or not at all: half of a real pair is useless.
        withheld |= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    return env, withheld


def connect_stores(prefix: str, *, provision: bool) -> Any:
    """The stores of ``prefix`` at the configured endpoint (settings for bucket and sizes)."""
    from runtime.settings import get_settings
    from runtime.stores import Stores

    settings = get_settings()
    return Stores.connect(
        prefix,
        results_bucket=settings.results_bucket,
        inline_result_max_bytes=settings.inline_result_max_bytes,
        provision_resources=provision,
    )


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (None when it can, or for port 0).

    Checked first because werkzeug reports a busy port by printing and exiting.
    """
    import socket

    if port == 0:
        return None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def start_listening(
    group: _stack.ServiceGroup, service: Any, what: str, host: str, port: int
) -> None:
    """Start a server on ``host:port`` with a clear error when it cannot listen."""
    problem = port_problem(host, port)
    if problem is None:
        try:
            group.start(service)
            return
        except OSError as exc:
            problem = exc.strerror or str(exc)
        except SystemExit:  # werkzeug's reaction to a port taken meanwhile
            problem = "Address already in use"
    fail(f"cannot listen on {host}:{port} for {what}: {problem} (choose another port)")


def start_gateway(group: _stack.ServiceGroup, host: str, port: int, token: str | None) -> Any:
    """Start the local API gateway serving ``handlers.api``; a clear error if the port is taken."""
    from handlers.local_gateway import LocalGateway

    gateway = LocalGateway(host=host, port=port, token=token or None)
    start_listening(group, gateway, "the API (--port)", host, port)
    return gateway


def save_state(state: Any, saved: list[Path]) -> None:
    """Save moto's state at shutdown; a failure is reported (the stack still stops)."""
    from runtime.localaws import MotoStateError

    try:
        saved.append(state.save())
    except MotoStateError as exc:
        error(f"--state-dir: the state was not saved: {exc}")


def dev(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the local API (0: a free one).")
    ] = DEFAULT_API_PORT,
    moto_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Port of the moto server (0: a free one)."),
    ] = DEFAULT_MOTO_PORT,
    prefix: Annotated[
        str,
        typer.Option(envvar="STRATOFLOW_PREFIX", help="Prefix of every table and bucket name."),
    ] = "stratoflow",
    token: Annotated[
        str | None,
        typer.Option(
            envvar="STRATOFLOW_API_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on every API request.",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="STRATOFLOW_DEV_STATE_DIR",
            file_okay=False,
            help=(
                "Keep the moto server's state (runs, logs, results, limits) in this "
                "directory across restarts (default: nothing kept)."
            ),
        ),
    ] = None,
    worker: Annotated[
        list[str] | None,
        typer.Option(
            "--worker",
            metavar="POOL",
            help="Start a worker polling this work pool (repeatable; default: the default pool).",
        ),
    ] = None,
) -> None:
    """Start the local stack: moto (or AWS_ENDPOINT_URL), provisioned tables, the API.

    Prints the environment to export in other shells; Ctrl-C or SIGTERM stops
    everything (and saves the state with --state-dir).
    """
    from runtime.engine.backend import EmbeddedBackendUnavailable, import_local_aws

    try:  # moto's server and werkzeug (the local API) come with the `local` extra
        import_local_aws("stratoflow dev", alternatives="")
    except EmbeddedBackendUnavailable as exc:
        fail(str(exc))
    from handlers.deps import set_stores
    from runtime.localaws import LockedMotoServer, MotoStateError, MotoStateFile
    from runtime.resources import DEFAULT_POOL
    from runtime.services.work_pools import ensure_work_pool
    from runtime.settings import get_settings

    check_prefix(prefix)
    external = os.environ.get("AWS_ENDPOINT_URL") or None
    if external is not None and state_dir is not None:
        usage_error(
            f"--state-dir keeps the state of the moto server dev starts, but AWS_ENDPOINT_URL "
            f"({external}) is set: that endpoint keeps its own state (unset it to use moto)"
        )
    saved: list[Path] = []
    with _stack.stop_on_signals() as stopping, _stack.ServiceGroup() as group:
        state: MotoStateFile | None = None
        if external is None:
            if state_dir is not None:
                state = MotoStateFile(state_dir)
                try:
                    state.start()  # restored before moto serves; saved after it stops
                except MotoStateError as exc:
                    fail(f"--state-dir: {exc}")
                group.callback(lambda: save_state(state, saved))
            server = LockedMotoServer("127.0.0.1", moto_port)
            start_listening(group, server, "the moto server (--moto-port)", "127.0.0.1", moto_port)
            endpoint, backend = server.endpoint, "moto server, atomic DynamoDB"
        else:
            endpoint, backend = external, "from AWS_ENDPOINT_URL"
        aws_env, withheld = aws_environment(endpoint, own_server=external is None)
        env = {**aws_env, "STRATOFLOW_PREFIX": prefix}
        _stack.set_environ(env)
        try:
            stores = connect_stores(prefix, provision=True)
        except Exception as exc:
            fail(f"cannot provision {prefix!r} at {endpoint}: {exc}")
        set_stores(stores)
        group.callback(lambda: set_stores(None))

        gateway = start_gateway(group, "127.0.0.1", port, token)
        env["STRATOFLOW_API_URL"] = gateway.url
        context = _stack.StackContext(
            endpoint_url=endpoint,
            prefix=prefix,
            api_url=gateway.url,
            stores=stores,
            env={**env, **({"STRATOFLOW_API_TOKEN": token} if token else {})},
            stopping=stopping,
        )
        for factory in _stack.DEV_SERVICES:
            group.start(factory(context))
        pools = list(dict.fromkeys(worker or [DEFAULT_POOL]))
        for pool in pools:  # a dev stack's worker pools exist (the default one always)
            try:
                ensure_work_pool(stores, pool)
            except Exception as exc:
                fail(f"--worker {pool}: cannot create work pool {pool!r}: {exc}")
        workers = _stack.worker_services(pools)
        for factory in workers:
            try:
                group.start(factory(context))
            except RuntimeError as exc:
                fail(f"--worker: {exc}")

        say("Stratoflow local stack", style="bold")
        say(f"  AWS endpoint  {endpoint} ({backend})")
        say(f"  prefix        {prefix} (tables and bucket provisioned)")
        say(f"  API           {gateway.url}  (Swagger UI: {gateway.url}/docs)")
        interval = get_settings().sweep_interval_seconds
        say(f"  maintenance   sweep every {interval:g} s (crashed workers, Late runs, leases)")
        say(f"  workers       one on each of: {', '.join(pools)} (stratoflow worker start)")
        if state is not None:
            restored = "restored" if state.restored else "new"
            say(f"  state         {state.path} ({restored}; saved on Ctrl-C/SIGTERM)")
        else:
            say("  state         ephemeral (--state-dir DIR keeps it across restarts)")
        say("")
        say("Use it from other shells (SDK, CLI, workers):")
        say("")
        # Plain print: the line must not be wrapped or styled, shells copy it verbatim.
        print(export_line(env, withheld), flush=True)
        for note in withheld_notes(withheld, token=bool(token)):
            say(note)
        print("", flush=True)
        say("Press Ctrl-C to stop.")
        _stack.wait_for(stopping)
        say("Stopping the local stack...")
    for path in saved:
        say(f"Saved the local stack's state to {path}.")
    say("Stopped.")
    if state is not None and not saved:
        raise typer.Exit(1)
