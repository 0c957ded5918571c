"""Driving a remote supervisor through its admin API: ``--server HOST:PORT``.

The token comes from ``--token`` or ``$IRE_TOKEN`` (an argument is visible to other local
users in the process list; prefer the variable). TLS is used when ``--tls-ca`` is given;
``--tls-cert``/``--tls-key`` add a client certificate for servers that require mTLS.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import grpc

from protos import admin_pb2_grpc
from supervisor.errors import InvalidInputError, UnavailableError

__all__ = ["TOKEN_ENV", "RemoteCallError", "add_remote_options", "admin_call", "open_channel"]

TOKEN_ENV = "IRE_TOKEN"  # noqa: S105 - the name of a variable, not a token
# Admin calls may register a model or export a bundle: generous, but bounded.
CALL_TIMEOUT_SECONDS = 300.0


class RemoteCallError(UnavailableError):
    """The remote supervisor refused or failed the call; carries its gRPC status."""


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("remote supervisor")
    group.add_argument("--server", help="HOST:PORT of a running `ire serve` (default: act on the local home)")
    group.add_argument("--token", help=f"admin token for --server (default: ${TOKEN_ENV})")
    group.add_argument("--tls-ca", type=Path, help="CA bundle (PEM) to verify the server with; enables TLS")
    group.add_argument("--tls-cert", type=Path, help="client certificate (PEM) for mTLS")
    group.add_argument("--tls-key", type=Path, help="client private key (PEM) for mTLS")
    group.add_argument("--tls-server-name", help="name to verify in the server certificate (default: HOST)")


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    if args.tls_ca is None:
        if args.tls_cert is not None or args.tls_key is not None:
            raise InvalidInputError("--tls-cert and --tls-key need --tls-ca")
        return grpc.insecure_channel(args.server)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InvalidInputError("--tls-cert and --tls-key go together")
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=args.tls_ca.read_bytes(),
            private_key=args.tls_key.read_bytes() if args.tls_key else None,
            certificate_chain=args.tls_cert.read_bytes() if args.tls_cert else None,
        )
    except OSError as exc:
        raise InvalidInputError(f"cannot read TLS material: {exc}") from exc
    options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    return grpc.secure_channel(args.server, credentials, options=options)


def admin_call(args: argparse.Namespace, method: str, request: Any) -> Any:
    """Call ``AdminService.<method>`` on ``--server``; a refusal raises RemoteCallError."""
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise InvalidInputError(f"--server needs an admin token: pass --token or set {TOKEN_ENV}")
    channel = open_channel(args)
    try:
        stub = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        return getattr(stub, method)(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=CALL_TIMEOUT_SECONDS
        )
    except grpc.RpcError as exc:
        raise RemoteCallError(f"{args.server}: {exc.code().name}: {exc.details()}") from exc
    finally:
        channel.close()
