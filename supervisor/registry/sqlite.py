"""The embedded registry of tenants and models, in SQLite.

The CLI and a running supervisor open the same file. Lookups on the prediction path are
cached in memory. The cache is dropped as soon as another process changes the registry
through this class (it bumps the shared counter of :class:`_Changes` after each commit),
and otherwise whenever ``PRAGMA data_version`` says another connection changed the
database, asked at most every ``BACKSTOP_SECONDS``. So ``ire model register`` and ``ire
token revoke`` are seen without a restart, by the next call.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import structlog

from supervisor.errors import (
    AlreadyExistsError,
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
    TenantNotFoundError,
)
from supervisor.modelgraph import TensorSpec
from supervisor.registry.records import (
    ModelRecord,
    Tenant,
    TrustedSigner,
    check_model_name,
    check_tenant_name,
    check_tier,
    check_version,
)

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    tier TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    suspended INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS models (
    tenant TEXT NOT NULL REFERENCES tenants(name),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    byte_size INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    outputs TEXT NOT NULL,
    registered_at REAL NOT NULL,
    signer TEXT NOT NULL DEFAULT '',
    signature_sha256 TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, name, version)
);
CREATE TABLE IF NOT EXISTS signers (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT '',
    public_key_pem TEXT NOT NULL,
    key_hint TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    token_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL DEFAULT '',
    revoked_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quotas (
    tenant TEXT PRIMARY KEY REFERENCES tenants(name),
    overrides TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


def _specs_to_json(specs: tuple[TensorSpec, ...]) -> str:
    return json.dumps([{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs])


def _specs_from_json(text: str) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(d["name"], d["datatype"], tuple(d["shape"])) for d in json.loads(text))


def _tenant(row: sqlite3.Row) -> Tenant:
    labels = json.loads(row["labels"])
    return Tenant(
        row["name"],
        row["tier"],
        row["created_at"],
        row["number"],
        tuple(sorted(labels.items())),
        bool(row["suspended"]),
    )


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a home made by an older IRE up to this schema (additive changes only)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(tenants)").fetchall()}
    if "suspended" not in columns:
        db.execute("ALTER TABLE tenants ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0")


def _model(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(
        tenant=row["tenant"],
        name=row["name"],
        version=row["version"],
        sha256=row["sha256"],
        byte_size=row["byte_size"],
        inputs=_specs_from_json(row["inputs"]),
        outputs=_specs_from_json(row["outputs"]),
        registered_at=row["registered_at"],
        signer=row["signer"],
        signature_sha256=row["signature_sha256"],
    )


# How stale a read may be after another process (the CLI, the admin API of another
# replica) commits a change, such as a token revocation or a tenant suspension, when the
# shared change counter cannot be used (then SQLite is asked this often instead).
FRESHNESS_SECONDS = 0.001
# With the counter, how often SQLite is asked anyway: for a change made to the database by
# something other than this class (the sqlite3 shell, a writer killed between its commit
# and its bump).
BACKSTOP_SECONDS = 0.1
CHANGES_SUFFIX = ".changes"
_COUNTER_BYTES = 8


class _Changes:
    """A change counter shared by every process that opens one registry database.

    Each write through :class:`Registry` bumps it after its commit, under an ``flock`` so
    that two writers never lose a bump; a reader compares it with the value it last saw,
    through a shared mapping, with no system call. ``PRAGMA data_version`` answers the same
    question, but it is a query with several system calls: asked once a millisecond, it
    cost the loaded server's event loop about 12 µs a call (bench.steps).
    """

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(fd).st_size < _COUNTER_BYTES:
                os.ftruncate(fd, _COUNTER_BYTES)  # zeros; a larger file is never shrunk
            self._map = mmap.mmap(fd, _COUNTER_BYTES)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._value = memoryview(self._map).cast("Q")

    def value(self) -> int:
        return int(self._value[0])

    def bump(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._value[0] = (self._value[0] + 1) % 2**64
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._value.release()
        self._map.close()
        os.close(self._fd)


def _open_changes(db_path: Path) -> _Changes | None:
    """The counter beside the database, or None (then SQLite is asked every millisecond)."""
    try:
        return _Changes(db_path.with_name(db_path.name + CHANGES_SUFFIX))
    except (OSError, ValueError) as exc:
        log.warning("registry change counter unavailable; asking SQLite every millisecond", error=str(exc))
        return None


class Registry:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        _migrate(self._db)
        self._cache: dict[tuple[str, ...], Any] = {}
        self._version = -1
        self._checked_at = -BACKSTOP_SECONDS
        self._changes = _open_changes(Path(path))
        self._seen = self._changes.value() if self._changes is not None else 0
        self._interval = BACKSTOP_SECONDS if self._changes is not None else FRESHNESS_SECONDS

    def close(self) -> None:
        self._db.close()
        if self._changes is not None:
            self._changes.close()
            self._changes = None

    def _changed(self) -> None:
        """After a commit: drop this cache, and tell every other process's."""
        self._cache.clear()
        if self._changes is not None:
            try:
                self._changes.bump()
            except OSError as exc:
                # The change is committed; others see it through SQLite within the backstop.
                log.warning("cannot bump the registry change counter", error=str(exc))

    def _cached(self) -> dict[tuple[str, ...], Any]:
        """The read cache, emptied when another connection has changed the database.

        A change made through another Registry is seen here at once (the shared counter);
        any other change when SQLite is next asked, at most ``BACKSTOP_SECONDS`` later
        (``FRESHNESS_SECONDS`` without the counter). A call reads the registry four or five
        times, and each SQLite check is a query. A change this connection makes clears the
        cache itself, at once.
        """
        changes = self._changes
        if changes is not None:
            seen = changes.value()
            if seen != self._seen:
                self._seen = seen
                self._cache.clear()
        now = time.monotonic()
        if now - self._checked_at >= self._interval:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            self._checked_at = now
            if version != self._version:
                self._cache.clear()
                self._version = version
        return self._cache

    # Tenants

    def create_tenant(self, name: str, tier: str = "standard", labels: dict[str, str] | None = None) -> Tenant:
        check_tenant_name(name)
        check_tier(tier)
        try:
            self._db.execute(
                "INSERT INTO tenants (name, tier, labels, created_at) VALUES (?, ?, ?, ?)",
                (name, tier, json.dumps(labels or {}, sort_keys=True), time.time()),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError(f"tenant {name!r} exists already") from exc
        self._changed()
        return self.get_tenant(name)

    def get_tenant(self, name: str) -> Tenant:
        cache = self._cached()
        key = ("tenant", name)
        if key not in cache:
            row = self._db.execute("SELECT * FROM tenants WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise TenantNotFoundError(f"tenant {name!r} does not exist")
            cache[key] = _tenant(row)
        tenant: Tenant = cache[key]
        return tenant

    def list_tenants(self) -> list[Tenant]:
        rows = self._db.execute("SELECT * FROM tenants ORDER BY name").fetchall()
        return [_tenant(r) for r in rows]

    def update_tenant(self, name: str, tier: str | None = None, labels: dict[str, str] | None = None) -> Tenant:
        """Set the tenant's tier and/or labels (``None``: unchanged)."""
        current = self.get_tenant(name)
        new_tier = check_tier(tier) if tier is not None else current.tier
        new_labels = labels if labels is not None else dict(current.labels)
        self._db.execute(
            "UPDATE tenants SET tier = ?, labels = ? WHERE name = ?",
            (new_tier, json.dumps(new_labels, sort_keys=True), name),
        )
        self._changed()
        return self.get_tenant(name)

    def set_suspended(self, name: str, suspended: bool) -> Tenant:
        self.get_tenant(name)
        self._db.execute("UPDATE tenants SET suspended = ? WHERE name = ?", (int(suspended), name))
        self._changed()
        return self.get_tenant(name)

    def delete_tenant(self, name: str) -> None:
        """Delete a tenant without models, with its quota overrides and its own signers."""
        self.get_tenant(name)
        if self.list_models(name):
            raise InvalidInputError(f"tenant {name!r} has models; delete them first")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM quotas WHERE tenant = ?", (name,))
            self._db.execute("DELETE FROM signers WHERE tenant = ?", (name,))
            self._db.execute("DELETE FROM tenants WHERE name = ?", (name,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._changed()

    # Token revocation

    def revoke_token(self, token_id: str, reason: str = "") -> None:
        """Refuse the token with this ``jti`` from now on; revoking twice is a no-op."""
        if not token_id or len(token_id) > 128:
            raise InvalidInputError(f"got token id of {len(token_id)} characters, expected 1..128")
        self._db.execute("INSERT OR IGNORE INTO revoked_tokens VALUES (?, ?, ?)", (token_id, reason[:256], time.time()))
        self._changed()

    def revoked_token_ids(self) -> frozenset[str]:
        """Every revoked ``jti``; cached until another connection changes the database."""
        cache = self._cached()
        key = ("revoked",)
        if key not in cache:
            cache[key] = frozenset(r[0] for r in self._db.execute("SELECT token_id FROM revoked_tokens"))
        revoked: frozenset[str] = cache[key]
        return revoked

    # Quotas

    def set_quota_overrides(self, tenant: str, overrides: dict[str, Any]) -> None:
        """Replace the tenant's quota overrides (validated by the caller)."""
        self.get_tenant(tenant)
        self._db.execute(
            "INSERT INTO quotas (tenant, overrides, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (tenant) DO UPDATE SET overrides = excluded.overrides, updated_at = excluded.updated_at",
            (tenant, json.dumps(overrides, sort_keys=True), time.time()),
        )
        self._changed()

    def quota_overrides(self, tenant: str) -> dict[str, Any]:
        cache = self._cached()
        key = ("quota", tenant)
        if key not in cache:
            row = self._db.execute("SELECT overrides FROM quotas WHERE tenant = ?", (tenant,)).fetchone()
            cache[key] = json.loads(row[0]) if row else {}
        overrides: dict[str, Any] = cache[key]
        return dict(overrides)

    # Signers

    def add_signer(self, signer: TrustedSigner) -> None:
        if signer.tenant:
            self.get_tenant(signer.tenant)
        try:
            self._db.execute(
                "INSERT INTO signers VALUES (?, ?, ?, ?, ?)",
                (signer.name, signer.tenant, signer.public_key_pem, signer.key_hint, signer.added_at),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError(f"signer {signer.name!r} exists already") from exc
        self._changed()

    def remove_signer(self, name: str) -> None:
        if self._db.execute("DELETE FROM signers WHERE name = ?", (name,)).rowcount == 0:
            raise NotFoundError(f"signer {name!r} does not exist")
        self._changed()

    def list_signers(self) -> list[TrustedSigner]:
        rows = self._db.execute("SELECT * FROM signers ORDER BY name").fetchall()
        return [TrustedSigner(r["name"], r["tenant"], r["public_key_pem"], r["key_hint"], r["added_at"]) for r in rows]

    def signers_for(self, tenant: str) -> list[TrustedSigner]:
        """Signers trusted for ``tenant``: platform-wide ones and the tenant's own."""
        return [s for s in self.list_signers() if s.tenant in ("", tenant)]

    def get_signer(self, name: str) -> TrustedSigner:
        for signer in self.list_signers():
            if signer.name == name:
                return signer
        raise NotFoundError(f"signer {name!r} does not exist")

    # Models

    def add_model(self, record: ModelRecord) -> None:
        self.get_tenant(record.tenant)
        check_model_name(record.name)
        check_version(record.version)
        try:
            self._db.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.tenant,
                    record.name,
                    record.version,
                    record.sha256,
                    record.byte_size,
                    _specs_to_json(record.inputs),
                    _specs_to_json(record.outputs),
                    record.registered_at,
                    record.signer,
                    record.signature_sha256,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError(
                f"model {record.name!r} version {record.version!r} exists already for tenant {record.tenant!r}"
            ) from exc
        self._changed()

    def find_model(self, tenant: str, name: str, version: str = "") -> ModelRecord:
        """The tenant's model ``name`` at ``version``, or its latest version when empty.

        Only the tenant's own namespace is searched: another tenant's model is reported
        exactly like a missing one, so its existence does not leak.
        """
        cache = self._cached()
        key = ("model", tenant, name, version)
        if key not in cache:
            if version:
                row = self._db.execute(
                    "SELECT * FROM models WHERE tenant = ? AND name = ? AND version = ?",
                    (tenant, name, version),
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT * FROM models WHERE tenant = ? AND name = ? "
                    "ORDER BY registered_at DESC, rowid DESC LIMIT 1",
                    (tenant, name),
                ).fetchone()
            if row is None:
                shown = f"{name!r} version {version!r}" if version else repr(name)
                raise ModelNotFoundError(f"model {shown} not found")
            cache[key] = _model(row)
        record: ModelRecord = cache[key]
        return record

    def delete_models(self, tenant: str, name: str, version: str = "") -> int:
        """Delete one version of a model (or every version when empty); how many went."""
        if version:
            cursor = self._db.execute(
                "DELETE FROM models WHERE tenant = ? AND name = ? AND version = ?", (tenant, name, version)
            )
        else:
            cursor = self._db.execute("DELETE FROM models WHERE tenant = ? AND name = ?", (tenant, name))
        if cursor.rowcount == 0:
            shown = f"{name!r} version {version!r}" if version else repr(name)
            raise ModelNotFoundError(f"model {shown} not found for tenant {tenant!r}")
        self._changed()
        return int(cursor.rowcount)

    def model_versions(self, tenant: str, name: str) -> list[str]:
        rows = self._db.execute(
            "SELECT version FROM models WHERE tenant = ? AND name = ? ORDER BY registered_at",
            (tenant, name),
        ).fetchall()
        return [r["version"] for r in rows]

    def list_models(self, tenant: str | None = None) -> list[ModelRecord]:
        if tenant is None:
            rows = self._db.execute("SELECT * FROM models ORDER BY tenant, name, registered_at").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM models WHERE tenant = ? ORDER BY name, registered_at", (tenant,)
            ).fetchall()
        return [_model(r) for r in rows]
