"""A throwaway IRE home for the benchmark: one tenant, the 64→256→256→10 MLP and a token.

Built with the supervisor's own APIs, so the benchmark serves exactly what a user would
register, and without pytest, so ``bench`` runs from a plain virtualenv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supervisor.home import Home
from supervisor.modelgraph.build import build_mlp
from supervisor.signing.onboard import local_signer, sign_and_register

TENANT = "bench"
MODEL = "mlp"
LAYERS = (64, 256, 256, 10)


@dataclass(frozen=True)
class BenchHome:
    home: Home
    model_path: Path
    token: str


def make_bench_home(root: Path, token_ttl_seconds: int) -> BenchHome:
    """Create a home under ``root`` (which must not exist yet) holding ``bench/mlp`` version 1."""
    model_dir = root / "model"
    model_dir.mkdir(parents=True)
    model_path = model_dir / "model.onnx"
    model_path.write_bytes(build_mlp(LAYERS))
    home = Home.init(root / "home")
    registry = home.registry()
    try:
        registry.create_tenant(TENANT, "standard")
        key = local_signer(registry, root / "signing")
        sign_and_register(home, registry, TENANT, MODEL, model_dir, key, "1")
    finally:
        registry.close()
    auth = home.settings().auth
    token = home.issuer_key().issue(
        issuer=auth.issuer,
        audience=auth.audience,
        subject=f"{TENANT}-bench",
        tenant=TENANT,
        scopes=["predict"],
        ttl_seconds=token_ttl_seconds,
    )
    return BenchHome(home=home, model_path=model_path, token=token)
