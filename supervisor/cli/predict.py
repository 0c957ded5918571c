"""``ire predict``: call ModelInfer from a terminal."""

from __future__ import annotations

import argparse
import json
import sys

import grpc
import numpy as np

from supervisor.cli._common import open_home
from supervisor.client import Client
from supervisor.errors import InvalidInputError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("predict", help="run one prediction against a server")
    p.add_argument("--server", default="127.0.0.1:8001", help="HOST:PORT")
    p.add_argument("--model", required=True)
    p.add_argument("--version", default="")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--token", help="a bearer token")
    who.add_argument("--tenant", help="issue a short-lived token from the local home")
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="NAME=JSON",
        help="an input tensor as nested JSON lists, e.g. x=[[1,2,3]]; repeatable",
    )
    p.set_defaults(run=run)


def _inputs(pairs: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise InvalidInputError(f"--input {pair!r} is not NAME=JSON")
        try:
            out[name] = np.asarray(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"--input {name}: not JSON: {exc}") from exc
    return out


def run(args: argparse.Namespace) -> int:
    token = args.token
    if token is None:
        home = open_home(args)
        settings = home.settings()
        token = home.issuer_key().issue(
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            subject=f"{args.tenant}-cli",
            tenant=args.tenant,
            scopes=["predict"],
            ttl_seconds=300,
        )
    client = Client(args.server, token)
    try:
        outputs = client.infer(args.model, _inputs(args.input), args.version)
    except grpc.RpcError as exc:
        print(f"ire: error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps({name: array.tolist() for name, array in outputs.items()}))
    return 0
