"""The ``natsbus`` command.

``natsbus status``, ``natsbus jobs`` and ``natsbus dlq list|show|replay`` show a channel's
workers and job requests (waiting, running, given up) as JetStream holds them (see
:mod:`natsbus.ops`).

``natsbus top URL...`` is a live view of processes' lanes and jobs, from their ``/metrics``.

``natsbus permissions --channel C --name N --role R`` prints the least NATS permissions of
a bus in that role (see :mod:`natsbus.access`).

``natsbus serve module:make_session --group G --slots N`` hosts a group's sessions (see
:mod:`natsbus.sessions`); ``natsbus run ... --service`` hosts a service worker that only its
deployment ends (SIGTERM, or ``--end-from`` names).

``natsbus run module:WorkerClass`` hosts one worker in a :class:`~natsbus.workers.WorkerRunner`
until it ends: on NATS with ``--nats-url`` (the container entrypoint of a deployment), or on
the in-process bus without it. SIGTERM drains (running jobs finish within ``--grace-period``)
and exits 0; SIGINT cancels and exits 130.

Metrics (Prometheus, default registry) and trace propagation are on unless ``--no-metrics`` /
``--no-tracing``; spans are exported only with ``--otel console|otlp``. ``--http-port`` serves
``/metrics``, ``/healthz`` and ``/readyz`` (see ``docs/observability.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Final

from natsbus import __version__
from natsbus._cli_nats import add_nats_arguments, nats_options
from natsbus._cli_ops import add_ops_commands, run_ops
from natsbus._cli_serve import add_serve_command, import_target, serve, start_endpoint
from natsbus._cli_top import add_top_command, run_top
from natsbus._redact import redact_url
from natsbus.bus import AsyncQueueBus, WorkerBus
from natsbus.collector import tune_collector
from natsbus.errors import BusPermissionError, BusUnavailableError
from natsbus.observability import BusMetrics, BusTracing, Health
from natsbus.workers import BaseWorker, WorkerRunner

__all__ = ["load_worker", "main"]

logger = logging.getLogger("natsbus.cli")

EXIT_CANCELLED: Final = 130
"""Exit status after SIGINT or a cancelled session (128 + SIGINT, as shells report it)."""


def load_worker(target: str, name: str | None) -> BaseWorker:
    """Import ``module:attribute`` and make the worker from it.

    The attribute is a :class:`~natsbus.workers.BaseWorker` subclass, or any callable taking
    an optional ``name`` keyword and returning a worker. The current directory is importable,
    as it is for ``python -m``.

    Args:
        target: ``package.module:WorkerClass``.
        name: The worker's name, or None for its default.

    Returns:
        The worker.

    Raises:
        ValueError: ``target`` is not ``module:attribute``, or it does not make a worker.
        ImportError: The module cannot be imported.
    """
    factory = import_target(target, "WorkerClass")
    worker = factory(name=name) if name is not None else factory()
    if not isinstance(worker, BaseWorker):
        raise ValueError(f"{target!r} made {worker!r}, not a BaseWorker")
    return worker


def _make_bus(args: argparse.Namespace, metrics: BusMetrics | None) -> WorkerBus:
    tracing = BusTracing() if args.tracing else None
    if not args.nats_url:
        return AsyncQueueBus(metrics=metrics, observer=tracing)
    from natsbus.bus.nats.bus import NatsBus  # noqa: PLC0415  (only when NATS is asked for)

    connect, jetstream = nats_options(args, name=f"natsbus-{args.target}")
    return NatsBus(
        connect_options=connect,
        jetstream_options=jetstream,
        channel=args.channel,
        metrics=metrics,
        observer=tracing,
    )


async def _serve(args: argparse.Namespace) -> int:
    worker = load_worker(args.target, args.name)
    provider = None
    if args.otel != "none":
        from natsbus.observability.sdk import configure_tracing  # noqa: PLC0415  (SDK: CLI only)

        provider = configure_tracing(args.otel, service_name=f"natsbus-{worker.name}")
    metrics = BusMetrics() if args.metrics else None
    if args.service:
        from natsbus.workers.service import ServiceRunner  # noqa: PLC0415

        runner: WorkerRunner = ServiceRunner(
            bus=_make_bus(args, metrics),
            name=args.runner_name,
            grace_period=args.grace_period,
            end_from=args.end_from,
        )
    else:
        runner = WorkerRunner(
            bus=_make_bus(args, metrics), name=args.runner_name, grace_period=args.grace_period
        )
    await runner.add_workers(worker)
    health = Health()
    health.add_runner(runner)
    server = await start_endpoint(args, metrics, health)
    where = (
        f"NATS {', '.join(redact_url(url) for url in args.nats_url)} channel {args.channel!r}"
        if args.nats_url
        else ("the in-process bus")
    )
    logger.info("hosting worker %r on %s (runner %r)", worker.name, where, runner.name)
    tune_collector()  # start-up is over: see natsbus.collector
    try:
        await runner.run()
    finally:
        if server is not None:
            await server.stop()
        if provider is not None:
            provider.shutdown()  # sends the spans still in the batch
    logger.info("worker %r ended", worker.name)
    return EXIT_CANCELLED if runner.cancelled else 0


def _print_permissions(args: argparse.Namespace) -> int:
    from natsbus.access import permissions  # noqa: PLC0415  (loads the NATS layout)

    if args.role == "serve":
        from natsbus.access import serve_permissions  # noqa: PLC0415

        if not args.group:
            raise ValueError("--role serve needs --group (and --name for each session worker)")
        found = serve_permissions(
            channel=args.channel,
            group=args.group,
            names=args.name,
            services_channel=args.services_channel or None,
            prefix=args.prefix,
            stream=args.stream,
        )
    else:
        found = permissions(
            channel=args.channel,
            names=args.name,
            role=args.role,
            prefix=args.prefix,
            stream=args.stream,
        )
    if args.json:
        print(found.to_json())
    else:
        print(f"# natsbus {__version__}: role {args.role} on channel {args.channel!r}")
        print(f"# names: {', '.join(args.name) or '(none)'}; inbox prefix {found.inbox_prefix}")
        print(found.to_server_config())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="natsbus",
        description="Host natsbus workers: natsbus run module:WorkerClass [options].",
        epilog="SIGTERM drains (running jobs finish within --grace-period) and exits 0;"
        " SIGINT cancels and exits 130. See docs/deploy.md.",
    )
    parser.add_argument("--version", action="version", version=f"natsbus {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    access = commands.add_parser(
        "permissions",
        help="print the least NATS permissions of a bus",
        description="Print the NATS permissions a bus needs in a role: a nats-server"
        " `permissions` block, or with --json the permissions object.",
    )
    access.add_argument("--channel", default="default", help="the channel (default: default)")
    access.add_argument(
        "--name",
        action="append",
        default=[],
        help="a worker the bus hosts (repeat for several; none for an observer)",
    )
    access.add_argument(
        "--role",
        choices=("worker", "requester", "runner", "observer", "serve"),
        default="worker",
        help="what the bus does: run jobs, request them only, also make the streams"
        " (natsbus run), only read, or serve a session group (natsbus serve: --group, and"
        " --name for each session worker) (default: worker)",
    )
    access.add_argument("--group", help="with --role serve: the session group")
    access.add_argument(
        "--services-channel",
        default="services",
        help="with --role serve: the services channel ('' for none; default: services)",
    )
    access.add_argument("--prefix", default="natsbus", help="subject prefix (default: natsbus)")
    access.add_argument(
        "--stream", default="NATSBUS_JOBS", help="job stream name (default: NATSBUS_JOBS)"
    )
    access.add_argument("--json", action="store_true", help="print the permissions as JSON")
    add_ops_commands(commands)
    add_top_command(commands)
    run = commands.add_parser("run", help="host one worker until it ends")
    run.add_argument("target", help="the worker, as module:WorkerClass")
    run.add_argument("--name", help="the worker's name (default: the class's default)")
    run.add_argument(
        "--nats-url",
        action="append",
        default=[],
        metavar="URL",
        help="NATS server URL (repeat for several); without it, the in-process bus",
    )
    run.add_argument("--channel", default="default", help="the NATS channel (default: default)")
    add_nats_arguments(run)
    run.add_argument("--runner-name", help="the runner's name (default: random)")
    run.add_argument(
        "--grace-period",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long running jobs may finish after SIGTERM (default: 30)",
    )
    run.add_argument(
        "--service",
        action="store_true",
        help="a service worker shared by sessions: only SIGTERM or --end-from names end it",
    )
    run.add_argument(
        "--end-from",
        action="append",
        default=[],
        metavar="NAME",
        help="with --service: a name whose end/cancel ends the worker (repeat)",
    )
    _add_common(run)
    add_serve_command(commands, _add_common)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    """The logging, HTTP endpoint, metrics and tracing options of ``run`` and ``serve``."""
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    parser.add_argument(
        "--debug", action="store_true", help="print the whole traceback of a failure to start"
    )
    parser.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help="serve /metrics, /healthz and /readyz on this port (default: no endpoint)",
    )
    parser.add_argument(
        "--http-host", default="0.0.0.0", help="address of the endpoint (default: 0.0.0.0)"
    )
    parser.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count Prometheus metrics in the default registry (default: on)",
    )
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="make spans and pass W3C trace context on (default: on; a no-op without --otel)",
    )
    parser.add_argument(
        "--otel",
        choices=("none", "console", "otlp"),
        default="none",
        help="export spans with the OpenTelemetry SDK: console, or OTLP/HTTP (default: none)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``natsbus`` command.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 after a graceful end, 130 after a cancel, 1 when NATS cannot be
        reached or refuses the connection or a permission, 2 on bad arguments or a worker
        module that cannot be imported (one line each, with the file and line in the user's
        code; ``--debug`` adds the traceback).
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING").upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _dispatch(args)
    except KeyboardInterrupt:  # Ctrl-C before a runner handles SIGINT (while it starts)
        return EXIT_CANCELLED
    except (BusUnavailableError, BusPermissionError) as error:
        # The message says what failed and where (passwords replaced); the nats-py errors
        # chained under it would only repeat it at length (--debug shows them).
        _report(error, debug=getattr(args, "debug", False))
        return 1
    except (ValueError, LookupError, ImportError, AttributeError, SyntaxError) as error:
        _report(error, debug=getattr(args, "debug", False))
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; its exit status."""
    if args.command == "permissions":
        return _print_permissions(args)
    if args.command in ("status", "jobs", "dlq"):
        return asyncio.run(run_ops(args))
    if args.command == "top":
        try:
            return asyncio.run(run_top(args))
        except KeyboardInterrupt:  # how a live view is meant to end
            return 0
    if args.command == "serve":
        return asyncio.run(serve(args))
    return asyncio.run(_serve(args))


def _report(error: BaseException, *, debug: bool) -> None:
    """One line for ``error``, with where it happened in the user's code; all of it on --debug."""
    print(f"natsbus: {error}{_where(error)}", file=sys.stderr)
    if debug:
        traceback.print_exception(error, file=sys.stderr)


def _where(error: BaseException) -> str:
    """`` (file, line N)`` of the last frame outside natsbus and importlib, if any."""
    if isinstance(error, SyntaxError):
        return ""  # its message already names the file and the line
    ours = os.path.dirname(os.path.abspath(__file__))
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith(("<frozen", ours)) and "importlib" not in frame.filename
    ]
    if not frames:
        return ""
    return f" ({frames[-1].filename}, line {frames[-1].lineno})"


if __name__ == "__main__":
    sys.exit(main())
