"""``ire model``: register and list models."""

from __future__ import annotations

import argparse
from pathlib import Path

from protos import admin_pb2 as pb
from supervisor.audit import audited_action, local_principal
from supervisor.cli._common import open_home
from supervisor.cli._remote import add_remote_options, admin_call
from supervisor.models import find_onnx, register_model
from supervisor.signing import sign_model_dir, verify_model_dir


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("model", help="manage models")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    reg = actions.add_parser("register", help="register the ONNX model in directory PATH")
    reg.add_argument("--tenant", required=True)
    reg.add_argument("--name", required=True)
    reg.add_argument("--version", default="", help="default: the next integer version")
    reg.add_argument("--signature", type=Path, help="the OpenSSF model-signing signature of PATH")
    reg.add_argument("path", type=Path)
    reg.set_defaults(run=run_register)
    sign = actions.add_parser("sign", help="sign the model directory PATH (OpenSSF model-signing, EC key)")
    sign.add_argument("path", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="EC private key, PEM")
    sign.add_argument("--signature", type=Path, default=Path("model.sig"), help="output (default: model.sig)")
    sign.set_defaults(run=run_sign)
    verify = actions.add_parser("verify", help="check PATH's signature against this home's trusted signers")
    verify.add_argument("path", type=Path)
    verify.add_argument("--signature", type=Path, required=True)
    verify.add_argument("--tenant", default="", help="also accept signers trusted for this tenant")
    verify.set_defaults(run=run_verify)
    listing = actions.add_parser("list", help="list models")
    listing.add_argument("--tenant")
    listing.set_defaults(run=run_list)
    add_remote_options(reg)
    add_remote_options(listing)


def _specs(specs: tuple[object, ...]) -> str:
    return ", ".join(f"{s.name}:{s.datatype}{list(s.shape)}" for s in specs)  # type: ignore[attr-defined]


def _register_remote(args: argparse.Namespace) -> int:
    onnx = find_onnx(args.path)
    request = pb.RegisterModelRequest(
        tenant=args.tenant,
        name=args.name,
        version=args.version,
        onnx=onnx.read_bytes(),
        signature=args.signature.read_bytes() if args.signature else b"",
        filename=onnx.name,
    )
    model = admin_call(args, "RegisterModel", request)
    print(f"registered {model.tenant}/{model.name} version {model.version} sha256 {model.sha256}")
    return 0


def run_register(args: argparse.Namespace) -> int:
    if args.server:
        return _register_remote(args)
    home = open_home(args)
    with audited_action(home, "model.register", local_principal(), tenant=args.tenant, model=args.name) as audit:
        record = register_model(home, home.registry(), args.tenant, args.name, args.path, args.version, args.signature)
        audit.update(model_version=record.version, model_sha256=record.sha256, byte_size=record.byte_size)
    print(f"registered {record.tenant}/{record.name} version {record.version} sha256 {record.sha256}")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    sign_model_dir(args.path, args.key, args.signature)
    print(f"signed {args.path} -> {args.signature}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    registry = open_home(args).registry()
    candidates = registry.signers_for(args.tenant) if args.tenant else registry.signers_for("")
    verified = verify_model_dir(args.path, args.signature, candidates, find_onnx(args.path), tenant=args.tenant)
    print(f"verified {args.path}: signed by {verified.signer.name}, {len(verified.manifest.files)} file(s)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    if args.server:
        models = list(admin_call(args, "ListModels", pb.ListModelsRequest(tenant=args.tenant or "")).models)
    else:
        models = list(open_home(args).registry().list_models(args.tenant))
    for m in models:
        fields = [m.tenant, m.name, m.version, m.sha256[:16], str(m.byte_size)]
        print("\t".join([*fields, f"in: {_specs(m.inputs)}", f"out: {_specs(m.outputs)}"]))
    return 0
