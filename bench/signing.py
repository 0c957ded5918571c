"""Signature verification cost when loading a model: ``python -m bench.signing``.

In one run it measures, on the same ~100 MB model:
- one plain sha256 pass over the bytes (the floor: verification must hash them anyway);
- IRE's load-time check (read from the store, hash, verify the stored signature);
- the same load from an unsafe home that skips signatures;
- registration with ``model-signing`` verifying the directory.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from supervisor.home import Home
from supervisor.modelgraph.build import build_large_mlp
from supervisor.models import register_model
from supervisor.settings import ModelSettings, Settings
from supervisor.signing.load import load_model_bytes
from supervisor.signing.onboard import local_signer, sign_and_register


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=2560, help="MLP width; 2560 gives about 105 MB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ire-bench-sign-") as tmp:
        root = Path(tmp)
        model_dir = root / "model"
        model_dir.mkdir()
        data = build_large_mlp(hidden=args.hidden, layers=4)
        (model_dir / "model.onnx").write_bytes(data)
        mb = len(data) / 1e6

        signed_home = Home.init(root / "signed")
        registry = signed_home.registry()
        registry.create_tenant("bench")
        key = local_signer(registry, root / "keys")
        start = time.perf_counter()
        signed = sign_and_register(signed_home, registry, "bench", "big", model_dir, key, "1")
        register_s = time.perf_counter() - start

        unsafe_home = Home.init(root / "unsigned", Settings(models=ModelSettings(unsafe_allow_unsigned=True)))
        unsafe_registry = unsafe_home.registry()
        unsafe_registry.create_tenant("bench")
        unsigned = register_model(unsafe_home, unsafe_registry, "bench", "big", model_dir, "1")

        sha = _median_seconds(lambda: hashlib.sha256(data).digest(), args.repeat)
        load_signed = _median_seconds(
            lambda: load_model_bytes(signed, signed_home.store(), registry, signed_home.settings()), args.repeat
        )
        load_unsigned = _median_seconds(
            lambda: load_model_bytes(unsigned, unsafe_home.store(), unsafe_registry, unsafe_home.settings()),
            args.repeat,
        )
    print(f"model: {mb:.1f} MB, median of {args.repeat}")
    print(f"{'measure':<38}{'seconds':>10}{'MB/s':>10}{'vs sha256':>11}")
    for name, seconds in (
        ("sha256 pass (floor)", sha),
        ("load, signed (hash + signature)", load_signed),
        ("load, unsigned (unsafe home)", load_unsigned),
        ("sign + register (model-signing)", register_s),
    ):
        print(f"{name:<38}{seconds:>10.3f}{mb / seconds:>10.0f}{seconds / sha:>11.2f}")
    print(f"signed / unsigned load time: {load_signed / load_unsigned:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
