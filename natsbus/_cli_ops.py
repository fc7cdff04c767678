"""``natsbus status``, ``jobs`` and ``dlq``: a deployment's workers and jobs, from JetStream."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from natsbus._cli_nats import add_nats_arguments, nats_options
from natsbus.bus.nats.connection import close_connection, open_connection
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.messages import Lane
from natsbus.ops import (
    DeadLetter,
    WorkerJobs,
    WorkerStatus,
    as_json,
    dead_letter,
    dead_letters,
    fleet_status,
    job_backlog,
)
from natsbus.ops import replay as replay_dead_letter

__all__ = ["add_ops_commands", "run_ops"]


def add_ops_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``, ``jobs`` and ``dlq`` to the ``natsbus`` command."""
    status = commands.add_parser(
        "status", help="workers by runner, as announced, and whether the server sees them pull"
    )
    _add_common(status)
    jobs = commands.add_parser(
        "jobs", help="requests waiting, running and dead-lettered, per worker"
    )
    _add_common(jobs)
    dlq = commands.add_parser("dlq", help="job requests given up after their last attempt")
    dlq.add_argument("action", choices=("list", "show", "replay"))
    dlq.add_argument("sequence", nargs="?", type=int, help="the dead letter (show, replay)")
    _add_common(dlq)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-url", action="append", default=[], metavar="URL", help="NATS server URL"
    )
    parser.add_argument("--channel", default="default", help="the channel (default: default)")
    parser.add_argument("--prefix", default="natsbus", help="subject prefix (default: natsbus)")
    parser.add_argument(
        "--stream", default="NATSBUS_JOBS", help="job stream name (default: NATSBUS_JOBS)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_nats_arguments(parser)


async def run_ops(args: argparse.Namespace) -> int:
    """Run ``status``, ``jobs`` or ``dlq`` (see :func:`add_ops_commands`); the exit status."""
    if args.command == "dlq" and args.action != "list" and args.sequence is None:
        raise ValueError(f"natsbus dlq {args.action} needs the dead letter's sequence")
    if not args.nats_url:
        raise ValueError("give the NATS server with --nats-url")
    connect, _ = nats_options(args, name="natsbus-ops")
    layout = SubjectLayout(args.channel, args.prefix, args.stream)
    client = await open_connection(connect, Lane.DATA, on_reconnected=_nothing, on_error=_quiet)
    try:
        js = client.jetstream()
        if args.command == "status":
            workers = await fleet_status(js, layout)
            print(as_json(workers) if args.json else _status_table(workers))
        elif args.command == "jobs":
            rows = await job_backlog(js, layout)
            print(as_json(rows) if args.json else _jobs_table(rows))
        elif args.action == "list":
            letters = await dead_letters(js, layout)
            print(as_json(letters) if args.json else _letters_table(letters))
        elif args.action == "show":
            letter = await dead_letter(js, layout, args.sequence)
            print(json.dumps(letter.describe(), indent=2, default=str))
        else:
            letter = await replay_dead_letter(js, layout, args.sequence)
            job_id, worker = letter.request.job_id, letter.worker
            print(f"replayed dead letter {args.sequence}: job {job_id!r} sent to {worker!r} again")
    finally:
        await close_connection(client)
    return 0


async def _nothing() -> None:
    return None


async def _quiet(error: Exception) -> None:
    return None


def _table(header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _status_table(rows: list[WorkerStatus]) -> str:
    if not rows:
        return "no worker announced on this channel in the last 24 hours"
    header = [
        "worker",
        "runner",
        "parent",
        "active",
        "bridged",
        "ready since",
        "pulling",
        "running",
    ]
    return _table(
        header,
        [
            [
                row.worker,
                row.runner,
                row.parent or "-",
                "yes" if row.active else "no",
                "yes" if row.bridged else "no",
                "-" if row.ready_since is None else row.ready_since.isoformat(timespec="seconds"),
                "no consumer" if row.pulling is None else str(row.pulling),
                str(row.running),
            ]
            for row in rows
        ],
    )


def _jobs_table(rows: list[WorkerJobs]) -> str:
    if not rows:
        return "no job requests, consumers or dead letters on this channel"
    header = ["worker", "stored", "waiting", "running", "redelivered", "oldest", "dead-lettered"]
    return _table(
        header,
        [
            [
                row.worker,
                str(row.stored),
                "no consumer" if row.waiting is None else str(row.waiting),
                str(row.running),
                str(row.redelivered),
                "-" if row.oldest_age is None else f"{row.oldest_age:.1f}s",
                str(row.dead_lettered),
            ]
            for row in rows
        ],
    )


def _letters_table(letters: list[DeadLetter]) -> str:
    if not letters:
        return "no dead letters on this channel"
    header = ["sequence", "worker", "job id", "job name", "requester", "deliveries", "stored at"]
    return _table(
        header,
        [
            [
                str(letter.sequence),
                letter.worker,
                letter.request.job_id,
                letter.request.job_name or "-",
                letter.request.source,
                str(letter.deliveries),
                letter.stored_at.isoformat(timespec="seconds"),
            ]
            for letter in letters
        ],
    )
