"""A throwaway IRE home for the benchmark: one tenant, the 64→256→256→10 MLP and a token.

Built with the supervisor's own APIs, so the benchmark serves exactly what a user would
register, and without pytest, so ``bench`` runs from a plain virtualenv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supervisor.home import Home
from supervisor.modelgraph.build import build_large_mlp, build_mlp, build_tile
from supervisor.signing.onboard import local_signer, sign_and_register

TENANT = "bench"
MODEL = "mlp"
LAYERS = (64, 256, 256, 10)
LARGE_MODEL = "large"
# 1024 wide, 4 Gemms: 4.2 M parameters, 16 MB of FP32 weights.
LARGE_HIDDEN = 1024
LARGE_LAYERS = 4
# One Gemm from WIDE_WIDTH inputs to one output: a call of one row carries 1 MiB in and
# 4 bytes out, and its run reads the input once, so copying the input is most of its cost.
WIDE_MODEL = "wide"
WIDE_WIDTH = 262_144
# One Tile from 64 inputs to TALL_WIDTH outputs: a call of one row carries 256 bytes in and
# 1 MiB out, and its run writes the output once, so moving the output is most of its cost.
TALL_MODEL = "tall"
TALL_WIDTH = 262_144
TENANT_PREFIX = "rr"
# The bench tenant's tier: quotas stay on, with a rate (5,000/s) above what the MLP
# reaches here, so that figures measure serving rather than the token bucket.
BENCH_TIER = "premium"


@dataclass(frozen=True)
class BenchHome:
    home: Home
    model_path: Path
    token: str
    large_model_path: Path | None = None
    tenant_tokens: tuple[str, ...] = ()
    wide_model_path: Path | None = None
    tall_model_path: Path | None = None


def _write_model(root: Path, name: str, onnx: bytes) -> Path:
    model_dir = root / name
    model_dir.mkdir(parents=True)
    path = model_dir / "model.onnx"
    path.write_bytes(onnx)
    return path


def make_bench_home(
    root: Path, token_ttl_seconds: int, large: bool = False, tenants: int = 0, wide: bool = False, tall: bool = False
) -> BenchHome:
    """Create a home under ``root`` (which must not exist yet) holding ``bench/mlp`` version 1,
    with ``large`` also ``bench/large``, with ``wide`` also ``bench/wide``, with ``tall`` also
    ``bench/tall``, and ``tenants`` more tenants ``rr000``... each with its own signed copy of
    the MLP and its own token."""
    model_path = _write_model(root, "model", build_mlp(LAYERS))
    large_path = _write_model(root, "large-model", build_large_mlp(LARGE_HIDDEN, LARGE_LAYERS)) if large else None
    wide_path = _write_model(root, "wide-model", build_mlp((WIDE_WIDTH, 1))) if wide else None
    tall_path = None
    if tall:
        onnx = build_tile(LAYERS[0], TALL_WIDTH // LAYERS[0], input_name="input", output_name="output")
        tall_path = _write_model(root, "tall-model", onnx)
    names = [f"{TENANT_PREFIX}{i:03d}" for i in range(tenants)]
    home = Home.init(root / "home")
    registry = home.registry()
    try:
        registry.create_tenant(TENANT, BENCH_TIER)
        key = local_signer(registry, root / "signing")
        sign_and_register(home, registry, TENANT, MODEL, model_path.parent, key, "1")
        if large_path is not None:
            sign_and_register(home, registry, TENANT, LARGE_MODEL, large_path.parent, key, "1")
        if wide_path is not None:
            sign_and_register(home, registry, TENANT, WIDE_MODEL, wide_path.parent, key, "1")
        if tall_path is not None:
            sign_and_register(home, registry, TENANT, TALL_MODEL, tall_path.parent, key, "1")
        for name in names:
            registry.create_tenant(name, "standard")
            tenant_model = _write_model(root / "tenants", name, model_path.read_bytes())
            sign_and_register(home, registry, name, MODEL, tenant_model.parent, key, "1")
    finally:
        registry.close()
    auth = home.settings().auth
    issuer = home.issuer_key()

    def token(tenant: str) -> str:
        return issuer.issue(
            issuer=auth.issuer,
            audience=auth.audience,
            subject=f"{tenant}-bench",
            tenant=tenant,
            scopes=["predict"],
            ttl_seconds=token_ttl_seconds,
        )

    return BenchHome(
        home=home,
        model_path=model_path,
        token=token(TENANT),
        large_model_path=large_path,
        tenant_tokens=tuple(token(n) for n in names),
        wide_model_path=wide_path,
        tall_model_path=tall_path,
    )
