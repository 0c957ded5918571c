"""Regenerate the Python wire code from the .proto files in this folder.

Run ``python -m protos.generate`` from the repository root (``make protos``). The output
is committed; ``tests/test_protos_fresh.py`` fails when it is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent

# Files with a gRPC service also get a *_pb2_grpc.py module.
MESSAGES = ["protos/worker.proto", "protos/onnx_subset.proto"]
SERVICES = ["protos/inference/grpc_predict_v2.proto", "protos/admin.proto"]


def generate(out: Path) -> None:
    """Write the generated modules for every proto under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for proto in MESSAGES + SERVICES:
        args = ["protoc", f"-I{ROOT}", f"--python_out={out}", f"--pyi_out={out}"]
        if proto in SERVICES:
            args.append(f"--grpc_python_out={out}")
        if protoc.main([*args, str(ROOT / proto)]) != 0:
            raise SystemExit(f"protoc failed on {proto}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repository)")
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
