"""``natsbus serve module:make_session --group G --slots N``: host a group's sessions.

See :mod:`natsbus.sessions.serve`. SIGTERM drains (running sessions get ``--grace-period``
to end, then are cancelled) and exits 0; SIGINT cancels them and exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from natsbus._cli_nats import add_nats_arguments, nats_options
from natsbus._redact import redact_url
from natsbus.collector import tune_collector
from natsbus.observability import BusMetrics, BusTracing, Health, ObservabilityServer

__all__ = ["add_serve_command", "import_target", "load_factory", "serve", "start_endpoint"]

logger = logging.getLogger("natsbus.cli")


def import_target(target: str, what: str) -> Any:
    """Import ``module:attribute`` (the current directory importable, as for ``python -m``).

    Args:
        target: ``package.module:attribute``.
        what: How the usage calls the attribute (``WorkerClass``, ``make_session``).

    Raises:
        ValueError: ``target`` is not ``module:attribute`` or not callable.
        ImportError: The module cannot be imported.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected module:{what}, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    factory: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"{target!r} is not callable")
    return factory


def load_factory(target: str) -> Any:
    """Import the session factory ``module:make_session`` (see :func:`import_target`)."""
    return import_target(target, "make_session")


async def start_endpoint(
    args: argparse.Namespace, metrics: BusMetrics | None, health: Health
) -> ObservabilityServer | None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` if ``--http-port`` asks for it."""
    if args.http_port is None:
        return None
    server = ObservabilityServer(
        host=args.http_host, port=args.http_port, metrics=metrics, health=health
    )
    await server.start()
    return server


def add_serve_command(commands: Any, add_common: Any) -> None:
    """Add ``natsbus serve`` to the subcommands (``add_common`` adds the HTTP/log options)."""
    serve = commands.add_parser("serve", help="host sessions of a group, up to --slots at once")
    serve.add_argument("target", help="the session factory, as module:make_session")
    serve.add_argument("--group", required=True, help="the session group")
    serve.add_argument("--slots", type=int, default=8, help="sessions at once (default: 8)")
    serve.add_argument(
        "--nats-url",
        action="append",
        default=[],
        metavar="URL",
        required=True,
        help="NATS server URL (repeat for several)",
    )
    serve.add_argument(
        "--channel", default="default", help="where requests come (default: default)"
    )
    serve.add_argument(
        "--services-channel",
        default="services",
        help="channel of the shared service workers (default: services; '' for none)",
    )
    serve.add_argument(
        "--grace-period",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long running sessions may go on after SIGTERM (default: 120)",
    )
    serve.add_argument(
        "--ready-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a session's workers may take to be ready (default: 10)",
    )
    serve.add_argument(
        "--heartbeat",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between a session's heartbeats to its requester (default: 1)",
    )
    serve.add_argument(
        "--restart",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="start a session again elsewhere when its process dies (default: report it failed)",
    )
    serve.add_argument(
        "--end-from",
        action="append",
        default=[],
        metavar="NAME",
        help="a name whose end/cancel on the channel stops this process (repeat)",
    )
    add_nats_arguments(serve)
    add_common(serve)


async def serve(args: argparse.Namespace) -> int:
    """Run ``natsbus serve``; its exit status."""
    from natsbus.sessions import ServeOptions, SessionMetrics, SessionServer  # noqa: PLC0415

    factory = load_factory(args.target)
    if args.slots < 1:
        raise ValueError(f"--slots must be >= 1, got {args.slots}")
    connect, jetstream = nats_options(args, name=f"natsbus-serve-{args.group}")
    options = ServeOptions(
        group=args.group,
        slots=args.slots,
        channel=args.channel,
        services_channel=args.services_channel or None,
        grace_period=args.grace_period,
        ready_timeout=args.ready_timeout,
        heartbeat=args.heartbeat,
        restart=args.restart,
        end_from=tuple(args.end_from),
    )
    metrics = SessionMetrics(args.group, args.slots) if args.metrics else None
    provider = None
    if args.otel != "none":
        from natsbus.observability.sdk import configure_tracing  # noqa: PLC0415  (SDK: CLI only)

        provider = configure_tracing(args.otel, service_name=f"natsbus-serve-{args.group}")
    server = SessionServer(
        factory,
        options,
        connect_options=connect,
        jetstream_options=jetstream,
        metrics=metrics,
        bus_metrics=BusMetrics(worker_labels=False) if args.metrics else None,
        observer=BusTracing() if args.tracing else None,
    )
    health = Health()
    server.add_to(health)
    http = await start_endpoint(args, None, health)
    logger.info(
        "serving group %r (%d slots) on NATS %s channel %r",
        args.group,
        args.slots,
        ", ".join(redact_url(u) for u in args.nats_url),
        args.channel,
    )
    tune_collector()  # start-up is over: see natsbus.collector
    try:
        await server.run()
    finally:
        if http is not None:
            await http.stop()
        if provider is not None:
            provider.shutdown()  # sends the spans still in the batch
    return 130 if server.runner.cancelled else 0
