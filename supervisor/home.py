"""The IRE home: one directory holding a node's configuration, keys, registry and audit.

``ire init`` creates it; every other command opens it. The directory and the key file
are private to the owner (0700 / 0600): the issuer key mints tokens for any tenant.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from supervisor.audit.keys import AuditKey
from supervisor.auth import IssuerKey, TokenVerifier, VerifierSettings, jwks_document
from supervisor.errors import ConfigError
from supervisor.registry import ModelStore, Registry
from supervisor.settings import Settings, load_settings, render_settings

# The policies shipped with the source tree; `ire init` copies them into the home.
SHIPPED_POLICIES = Path(__file__).resolve().parent.parent / "policies"


def resolve_home(arg: str | os.PathLike[str] | None) -> Path:
    """The home from ``--home``, else ``$IRE_HOME``."""
    value = arg or os.environ.get("IRE_HOME")
    if not value:
        raise ConfigError("no IRE home: pass --home DIR or set IRE_HOME")
    return Path(value).expanduser().resolve()


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def issuer_key_path(self) -> Path:
        return self.root / "keys" / "issuer.pem"

    @property
    def audit_key_path(self) -> Path:
        return self.root / "keys" / "audit.pem"

    @property
    def jwks_path(self) -> Path:
        return self.root / "keys" / "jwks.json"

    @property
    def registry_path(self) -> Path:
        return self.root / "registry.db"

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def audit_dir(self) -> Path:
        return self.root / "audit"

    @property
    def policies_dir(self) -> Path:
        return self.root / "policies"

    @classmethod
    def init(cls, root: Path, settings: Settings | None = None) -> Home:
        """Create a new home at ``root``; refuse to touch an existing one."""
        home = cls(root)
        if home.config.exists():
            raise ConfigError(f"{root} is already an IRE home (found {home.config.name})")
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        for sub in (home.issuer_key_path.parent, home.store_dir, home.audit_dir):
            sub.mkdir(mode=0o700, exist_ok=True)
        key = IssuerKey.generate()
        key.save(home.issuer_key_path)
        AuditKey.generate().save(home.audit_key_path)
        home.jwks_path.write_text(json.dumps(jwks_document([key.public_jwk()]), indent=2) + "\n")
        Registry(home.registry_path).close()
        if SHIPPED_POLICIES.is_dir():
            shutil.copytree(SHIPPED_POLICIES, home.policies_dir)
        else:
            home.policies_dir.mkdir(mode=0o700)
        # Written last: its presence marks a complete home.
        home.config.write_text(render_settings(settings or Settings()))
        return home

    @classmethod
    def open(cls, root: Path) -> Home:
        home = cls(root)
        if not home.config.exists():
            raise ConfigError(f"{root} is not an IRE home (no config.toml); run `ire init` first")
        return home

    def settings(self) -> Settings:
        return load_settings(self.config)

    def registry(self) -> Registry:
        return Registry(self.registry_path)

    def store(self) -> ModelStore:
        return ModelStore(self.store_dir)

    def issuer_key(self) -> IssuerKey:
        return IssuerKey.load(self.issuer_key_path)

    def verifier(self, settings: Settings) -> TokenVerifier:
        auth = settings.auth
        return TokenVerifier.from_jwks_file(
            self.jwks_path,
            VerifierSettings(
                issuer=auth.issuer,
                audience=auth.audience,
                max_token_bytes=auth.max_token_bytes,
                leeway_seconds=auth.leeway_seconds,
                max_ttl_seconds=auth.max_ttl_seconds,
            ),
        )
