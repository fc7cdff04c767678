"""The NATS connection and JetStream options of ``natsbus run``.

Secrets never go on the command line, where any process of the pod could read them: user,
password and token come from the environment (``NATSBUS_NATS_USER``, ``NATSBUS_NATS_PASSWORD``,
``NATSBUS_NATS_TOKEN``, which the Helm chart fills from a Secret); credentials and NKEY seed
files are given by path.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from natsbus.bus.nats.options import JetStreamOptions, NatsConnectOptions

__all__ = ["ENV_PASSWORD", "ENV_TOKEN", "ENV_USER", "add_nats_arguments", "nats_options"]

ENV_USER = "NATSBUS_NATS_USER"
ENV_PASSWORD = "NATSBUS_NATS_PASSWORD"
ENV_TOKEN = "NATSBUS_NATS_TOKEN"


def add_nats_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the NATS connection, TLS and JetStream options to a ``run`` parser."""
    group = parser.add_argument_group(
        "NATS",
        f"user, password and token are read from ${ENV_USER}, ${ENV_PASSWORD} and ${ENV_TOKEN}",
    )
    group.add_argument("--nats-creds", metavar="PATH", help="a .creds file (JWT and NKEY seed)")
    group.add_argument("--nats-nkey-seed", metavar="PATH", help="an NKEY seed file")
    group.add_argument("--tls-ca", metavar="PATH", help="CA bundle that signs the server")
    group.add_argument("--tls-cert", metavar="PATH", help="client certificate (mutual TLS)")
    group.add_argument("--tls-key", metavar="PATH", help="client private key (mutual TLS)")
    group.add_argument("--tls-hostname", help="name to verify the server certificate against")
    group.add_argument(
        "--stream-replicas",
        type=int,
        default=1,
        metavar="N",
        help="replicas of the job streams, 3 on a clustered JetStream (default: 1)",
    )
    group.add_argument(
        "--ack-wait",
        type=float,
        default=JetStreamOptions.ack_wait,
        metavar="SECONDS",
        help="how long a job may run silent before another replica takes it; a job held by a"
        " crashed worker waits this long (default: %(default)s)",
    )
    group.add_argument(
        "--max-attempts",
        type=int,
        default=JetStreamOptions.max_attempts,
        metavar="N",
        help="deliveries of a job before it is answered 'error' (default: %(default)s)",
    )
    group.add_argument(
        "--max-jobs-in-flight",
        type=int,
        default=JetStreamOptions.max_jobs_in_flight,
        metavar="N",
        help="jobs this process takes at once for its worker (default: %(default)s)",
    )
    group.add_argument(
        "--stream-max-consumers",
        type=int,
        default=None,
        metavar="N",
        help="consumers each job stream may have (default: the server's, 1,000 from 2.15)",
    )


def nats_options(
    args: argparse.Namespace, *, name: str, environ: Mapping[str, str] = os.environ
) -> tuple[NatsConnectOptions, JetStreamOptions]:
    """Build the bus's options from parsed arguments and the environment.

    Args:
        args: What the ``run`` parser read (``nats_url`` among them).
        name: The connection name servers show for this process.
        environ: Where secrets are read from.

    Raises:
        ValueError: The options do not go together (a user without a password...).
    """
    connect = NatsConnectOptions(
        servers=tuple(args.nats_url),
        name=name,
        user=environ.get(ENV_USER) or None,
        password=environ.get(ENV_PASSWORD) or None,
        token=environ.get(ENV_TOKEN) or None,
        user_credentials=args.nats_creds,
        nkeys_seed=args.nats_nkey_seed,
        tls_ca_file=args.tls_ca,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
        tls_hostname=args.tls_hostname,
    )
    return connect, JetStreamOptions(
        replicas=args.stream_replicas,
        max_consumers=args.stream_max_consumers,
        ack_wait=args.ack_wait,
        max_attempts=args.max_attempts,
        max_jobs_in_flight=args.max_jobs_in_flight,
    )
