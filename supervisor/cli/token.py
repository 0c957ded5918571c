"""``ire token``: issue tenant tokens and print the issuer's public keys."""

from __future__ import annotations

import argparse
import json

from protos import admin_pb2 as pb
from supervisor.audit import audited_action, local_principal
from supervisor.audit.admin import token_id
from supervisor.cli._common import open_home
from supervisor.cli._remote import add_remote_options, admin_call
from supervisor.errors import InvalidInputError

SCOPES = ("predict", "admin")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="issue tokens, show the JWKS")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    issue = actions.add_parser("issue", help="print a signed JWT for a tenant")
    issue.add_argument("--tenant", required=True)
    issue.add_argument("--ttl", type=int, help="lifetime in seconds (default: auth.default_ttl_seconds)")
    issue.add_argument("--scope", choices=SCOPES, action="append", help="repeatable; default predict")
    issue.add_argument("--subject", help="the principal (default: TENANT-cli)")
    issue.set_defaults(run=run_issue)
    add_remote_options(issue)
    revoke = actions.add_parser("revoke", help="refuse the token with this id (jti) from now on")
    revoke.add_argument("token_id", metavar="JTI")
    revoke.add_argument("--reason", default="")
    revoke.set_defaults(run=run_revoke)
    add_remote_options(revoke)
    jwks = actions.add_parser("jwks", help="print the issuer's public JWKS")
    jwks.set_defaults(run=run_jwks)


def run_issue(args: argparse.Namespace) -> int:
    if args.server:
        request = pb.IssueTokenRequest(
            tenant=args.tenant, subject=args.subject or "", scopes=args.scope or ["predict"], ttl_seconds=args.ttl or 0
        )
        print(admin_call(args, "IssueToken", request).token)
        return 0
    home = open_home(args)
    settings = home.settings()
    home.registry().get_tenant(args.tenant)
    ttl = args.ttl if args.ttl is not None else settings.auth.default_ttl_seconds
    if not 0 < ttl <= settings.auth.max_ttl_seconds:
        raise InvalidInputError(f"--ttl {ttl} is out of range; expected 1..{settings.auth.max_ttl_seconds}")
    subject, scopes = args.subject or f"{args.tenant}-cli", sorted(set(args.scope or ["predict"]))
    # Recorded: who got a token for what, and its id; never the token itself.
    with audited_action(
        home, "token.issue", local_principal(), tenant=args.tenant, subject=subject, scopes=scopes, ttl_seconds=ttl
    ) as audit:
        token = home.issuer_key().issue(
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            subject=subject,
            tenant=args.tenant,
            scopes=scopes,
            ttl_seconds=ttl,
        )
        audit["jti"] = token_id(token)
    print(token)
    return 0


def run_jwks(args: argparse.Namespace) -> int:
    print(json.dumps(json.loads(open_home(args).jwks_path.read_text()), indent=2))
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    if args.server:
        admin_call(args, "RevokeToken", pb.RevokeTokenRequest(token_id=args.token_id, reason=args.reason))
    else:
        home = open_home(args)
        with audited_action(home, "token.revoke", local_principal(), jti=args.token_id, reason=args.reason):
            home.registry().revoke_token(args.token_id, args.reason)
    print(f"revoked token {args.token_id}")
    return 0
