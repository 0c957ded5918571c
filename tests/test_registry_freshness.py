"""A change another process commits reaches this process's cached reads, within the bound."""

from __future__ import annotations

import time
from pathlib import Path

from supervisor.registry.sqlite import FRESHNESS_SECONDS, Registry


def test_revocation_by_another_process_reaches_a_cached_reader(tmp_path: Path) -> None:
    # The server caches revoked token ids and tenants; the CLI writes through its own
    # connection. A revoked token or a suspended tenant must not keep being served.
    server = Registry(tmp_path / "registry.db")
    cli = Registry(tmp_path / "registry.db")
    cli.create_tenant("acme")
    assert "jti-1" not in server.revoked_token_ids()
    assert not server.get_tenant("acme").suspended
    cli.revoke_token("jti-1")
    cli.set_suspended("acme", True)
    time.sleep(FRESHNESS_SECONDS * 5)
    assert "jti-1" in server.revoked_token_ids()
    assert server.get_tenant("acme").suspended


def test_own_writes_are_seen_at_once(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    registry.create_tenant("acme")
    assert "jti-2" not in registry.revoked_token_ids()
    registry.revoke_token("jti-2")
    assert "jti-2" in registry.revoked_token_ids()  # no wait: this connection cleared its cache
