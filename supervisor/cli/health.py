"""``ire health``: ask a supervisor's grpc.health.v1 whether it serves (for exec probes).

Kubernetes' own gRPC probes cannot speak TLS; this one can (``--tls-ca``, and a client
certificate where mTLS is required). Exit 0 when SERVING, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supervisor.cli._remote import add_remote_options, open_channel
from supervisor.errors import InvalidInputError

# A probe that hangs is worse than one that fails: the kubelet has its own timeout too.
PROBE_TIMEOUT_SECONDS = 5.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("health", help="exit 0 when the supervisor at --server is SERVING (for probes)")
    p.add_argument("--service", default="", help="the grpc.health.v1 service name (default: the server)")
    add_remote_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.server:
        raise InvalidInputError("ire health needs --server HOST:PORT")
    channel = open_channel(args)
    try:
        stub = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=PROBE_TIMEOUT_SECONDS)
    except grpc.RpcError as exc:
        print(f"ire: {args.server}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
