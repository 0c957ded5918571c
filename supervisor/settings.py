"""The one settings object, read from the home's ``config.toml`` and validated at start.

Unknown sections or keys are errors, so a typo cannot silently leave a default in force.
Every bound IRE enforces is a named field here, with its reason beside it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.errors import ConfigError

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    # Address `ire serve` listens on when --listen is not given.
    listen: str = "127.0.0.1:8001"
    # Largest ModelInfer request accepted; bigger ones are INVALID_ARGUMENT. Bounds the
    # memory one call can make the supervisor hold.
    max_request_bytes: int = 16 * MiB
    # Seconds to let calls in flight finish on SIGTERM before they are cancelled.
    grace_seconds: float = 10.0
    # UNSAFE: serve plain text on an address other than loopback. Tokens and tensors then
    # cross the network readable by anyone on the path; without this, a non-loopback
    # listener needs [tls]. Logged as a warning at start and every 10 minutes.
    unsafe_plaintext: bool = False


@dataclass(frozen=True)
class TlsSettings:
    # Server certificate chain, PEM; empty: no TLS. Re-read when the file changes, so a
    # renewed certificate is served on the next handshake without a restart. Relative
    # paths are under the home.
    cert_file: str = ""
    # The certificate's private key, PEM (re-read with the certificate).
    key_file: str = ""
    # CA bundle, PEM: when set, every client must present a certificate chaining to it
    # (mTLS); empty: client certificates are not asked for.
    client_ca_file: str = ""


@dataclass(frozen=True)
class MetricsSettings:
    # HOST:PORT of the Prometheus endpoint (plain HTTP, /metrics); empty: no endpoint. A
    # port of its own, so that scrapes never compete with calls.
    listen: str = ""
    # Seconds between samples of worker memory/CPU and GPU slice usage.
    sample_seconds: float = 10.0


@dataclass(frozen=True)
class AuthSettings:
    # Expected `iss` claim of tenant tokens.
    issuer: str = "ire"
    # Expected `aud` claim of tenant tokens.
    audience: str = "ire"
    # Tokens longer than this are refused before parsing (memory and CPU bound).
    max_token_bytes: int = 8192
    # Allowed clock skew when checking `exp` and `iat`, in seconds.
    leeway_seconds: int = 30
    # Lifetime of tokens issued by `ire token issue` when --ttl is not given.
    default_ttl_seconds: int = 3600
    # Longest lifetime a token may have (exp - iat); longer ones are refused.
    max_ttl_seconds: int = 31 * 86400


@dataclass(frozen=True)
class LimitSettings:
    # Largest element count of one input or output tensor (bounds decode work).
    max_tensor_elements: int = 16 * MiB
    # Largest model accepted at registration and load.
    max_model_bytes: int = 1024 * MiB
    # Largest frame accepted from a worker: the bound on an untrusted reply.
    max_worker_frame_bytes: int = 256 * MiB


BATCHING_MODES = ("auto", "on", "off")
# The longest workers.batch_wait_ms: a call may wait this long for others to join its run.
MAX_BATCH_WAIT_MS = 100.0


@dataclass(frozen=True)
class WorkerSettings:
    # Live worker processes at most; an idle one is stopped to make room.
    max_workers: int = 64
    # ONNX Runtime intra-op threads per worker.
    intra_op_threads: int = 1
    # Seconds a worker has to start and greet the supervisor.
    start_timeout_seconds: float = 30.0
    # Seconds one prediction may take in a worker before the worker is stopped.
    call_timeout_seconds: float = 60.0
    # Merge a tenant's concurrent calls on one model into one run (supervisor/workers/
    # batching.py). That answers each call as if alone only when the model's rows are
    # independent. "auto": models whose graph proves it (supervisor/modelgraph/rows.py);
    # "on": every model with a dynamic first dimension, proven or not; "off": none.
    dynamic_batching: str = "auto"
    # Rows in one merged run at most.
    max_batch_rows: int = 64
    # When a merged run returns with fewer than batch_target_rows rows waiting, and took
    # less than batch_wait_ms, the next run waits up to batch_wait_ms for more calls (or
    # until that many rows wait). A call alone on an idle model never waits; 0 turns the
    # wait off. Under load a quick model's calls then share fewer, larger runs.
    batch_wait_ms: float = 2.0
    batch_target_rows: int = 16
    # Input tensors of at least input_region_min_bytes are written into the worker's input
    # region, shared memory it maps read-only, instead of into its frame (supervisor/workers/
    # region.py). Each live worker has one region of input_region_bytes: memory the
    # supervisor may hold is that times max_workers. A tensor that does not fit travels
    # in the frame.
    input_region: bool = True
    input_region_bytes: int = 32 * MiB
    input_region_min_bytes: int = 64 * 1024
    # A call whose outputs the model's metadata puts at output_region_min_bytes or more
    # gets a range of the worker's output region, shared memory the worker writes its
    # outputs into and the supervisor copies them out of once, instead of through frames.
    # Its pages are the worker's memory (it writes them first): output_region_bytes each.
    output_region: bool = True
    output_region_bytes: int = 32 * MiB
    output_region_min_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        # true and false are the values this key took before "auto" existed.
        mode = {"true": "on", "false": "off"}.get(self.dynamic_batching, self.dynamic_batching)
        if mode not in BATCHING_MODES:
            raise ConfigError(
                f"workers.dynamic_batching: got {self.dynamic_batching!r}, expected one of {BATCHING_MODES}"
            )
        object.__setattr__(self, "dynamic_batching", mode)
        if not 0 <= self.batch_wait_ms <= MAX_BATCH_WAIT_MS:
            raise ConfigError(
                f"workers.batch_wait_ms: got {self.batch_wait_ms}, expected 0 to {MAX_BATCH_WAIT_MS} (0 turns it off)"
            )
        if self.batch_target_rows < 1:
            raise ConfigError(f"workers.batch_target_rows: got {self.batch_target_rows}, expected at least 1")


@dataclass(frozen=True)
class SandboxSettings:
    # Tenant number N runs its workers as uid and gid uid_base + N: one uid per tenant, so
    # tenants cannot signal or ptrace each other's workers.
    uid_base: int = 200000
    # IRE's own cgroup, a relative path: on cgroup v1 below the group IRE was started in
    # (per hierarchy), on v2 below the mount's root (set it to a delegated subtree under
    # systemd). Other cgroups are left alone. See docs/sandbox.md.
    cgroup_parent: str = "ire"


@dataclass(frozen=True)
class PolicySettings:
    # "embedded" (regorus, in process) or "remote" (an OPA server, e.g. a sidecar).
    engine: str = "embedded"
    # Show the policy's reasons to a denied caller. Reasons are written by admins and are
    # always audited; false tells callers only "denied by policy".
    show_reasons: bool = True
    # Longest one decision may take, in seconds (either engine); a later one is a refusal
    # ("policy unavailable"). A slow OPA is cut off at this deadline; an embedded decision
    # is checked against it, and a candidate set whose probes exceed it is refused
    # (regorus cannot be interrupted: docs/policies.md).
    timeout_seconds: float = 0.5
    # Serve embedded decisions with regorus's compiled RVM when it agrees with the
    # interpreter on the probe corpus; false always interprets (docs/policies.md).
    compiled: bool = True
    # Cache embedded decisions, keyed by revision, tenant and every input field the
    # policy reads (a set whose reads cannot be listed is never cached).
    decision_cache: bool = True
    # Most decisions cached (LRU); bounds the cache's memory.
    decision_cache_entries: int = 10000
    # Seconds between checks of the home's policies/ for changes (hot reload).
    reload_poll_seconds: float = 2.0
    # Longest a candidate set may take to compile and pass its tests; past it, it is refused.
    reload_timeout_seconds: float = 30.0
    # Remote engine: the OPA server, https only.
    remote_url: str = "https://127.0.0.1:8181"
    # Remote engine: file, relative to the home, holding the bearer token for OPA.
    remote_token_file: str = "opa/token"  # noqa: S105 - a file name, not a secret
    # Remote engine: CA certificates, relative to the home, that verify OPA's TLS certificate.
    remote_ca_file: str = "opa/ca.pem"


@dataclass(frozen=True)
class AuditSettings:
    # Longest time a written record waits for fsync (group commit), in milliseconds.
    fsync_interval_ms: int = 50
    # A signed checkpoint at least every this many entries: bounds the unsigned tail and
    # how far a writer reads back when it opens the log.
    checkpoint_every_records: int = 1000
    # ...and at least this often while entries arrive, in seconds: bounds how long an entry
    # stays covered by the hash chain alone.
    checkpoint_interval_seconds: float = 10.0
    # A segment is sealed and a new one started past this size (bounds one file to copy or check)...
    segment_max_bytes: int = 64 * MiB
    # ...or past this age, in seconds, so retention can remove whole days.
    segment_max_age_seconds: float = 86400.0
    # Sealed segments older than this are removed, with a signed record of the removal. 400
    # days covers the EU AI Act's six months (Art. 19) and PCI DSS 10.5.1's twelve.
    retention_days: int = 400
    # Payload capture (off unless enabled per tenant): bytes kept per tensor at most.
    capture_max_bytes: int = 4096


@dataclass(frozen=True)
class ModelSettings:
    # UNSAFE, development only: accept models without a signature. Set by
    # `ire init --unsafe-allow-unsigned-models`; every unsigned load logs a warning and
    # marks its audit records.
    unsafe_allow_unsigned: bool = False


@dataclass(frozen=True)
class QuotaSettings:
    # "embedded" (in process, daily counters in the home's quota.db) or "redis" (a fleet).
    store: str = "embedded"
    # The Redis shared by the fleet, when store = "redis".
    redis_url: str = "redis://127.0.0.1:6379/0"
    # One Redis round trip may take this long before the call is refused.
    redis_timeout_ms: int = 250
    # A concurrency slot held by a supervisor that died is freed after this many seconds.
    lease_seconds: float = 120.0
    # UNSAFE: admit calls when the quota store is unreachable. Logged on every such call.
    unsafe_fail_open: bool = False


@dataclass(frozen=True)
class GpuSettings:
    # "nvml" (the real GPUs; empty without a driver), "none", or "simulated:LAYOUT" for
    # tests and demos (layouts: h200-7x1g, mixed, h200-whole).
    inventory: str = "nvml"
    # When no slice of the tenant's profile is free: "refuse" (RESOURCE_EXHAUSTED) or
    # "queue" (wait up to queue_timeout_seconds, with at most max_waiters waiting).
    when_exhausted: str = "refuse"
    queue_timeout_seconds: float = 5.0
    max_waiters: int = 64


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    gpu: GpuSettings = field(default_factory=GpuSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


_SECTION_TYPES = {
    "server": ServerSettings,
    "auth": AuthSettings,
    "limits": LimitSettings,
    "workers": WorkerSettings,
    "sandbox": SandboxSettings,
    "policy": PolicySettings,
    "audit": AuditSettings,
    "quota": QuotaSettings,
    "models": ModelSettings,
    "gpu": GpuSettings,
    "tls": TlsSettings,
    "metrics": MetricsSettings,
}


# Numbers are positive, but for these, where 0 turns something off.
_ZERO_ALLOWED = {("workers", "batch_wait_ms")}


def _check_value(where: str, expected: Any, value: Any, default: Any = None, *, zero_allowed: bool = False) -> Any:
    if expected == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    kinds: dict[str, type[Any]] = {"int": int, "float": float, "str": str, "bool": bool}
    kind = kinds[expected]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}: got {type(value).__name__} {value!r}, expected {expected}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (value < 0 or (value == 0 and not zero_allowed)):
        raise ConfigError(f"{where}: got {value!r}, expected {'0 or more' if zero_allowed else 'a positive number'}")
    if kind is str and not value and default != "":
        raise ConfigError(f"{where}: got an empty string, expected a value")
    return value


def parse_settings(raw: dict[str, Any], source: str = "config") -> Settings:
    """Validate a parsed TOML document into :class:`Settings`."""
    sections: dict[str, Any] = {}
    for name, table in raw.items():
        cls = _SECTION_TYPES.get(name)
        if cls is None:
            raise ConfigError(f"{source}: unknown section [{name}]; known: {sorted(_SECTION_TYPES)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table, got {type(table).__name__}")
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        # Fields whose default is "" take "" to mean "not set" (say, no TLS).
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        values = {}
        for key, value in table.items():
            if key not in fields:
                raise ConfigError(f"{source}: unknown key {name}.{key}; known: {sorted(fields)}")
            if (name, key) == ("workers", "dynamic_batching") and isinstance(value, bool):
                value = str(value).lower()  # a config file written before "auto": WorkerSettings maps it
            values[key] = _check_value(
                f"{source}: {name}.{key}", fields[key], value, defaults[key], zero_allowed=(name, key) in _ZERO_ALLOWED
            )
        sections[name] = cls(**values)
    return Settings(**sections)


ENV_PREFIX = "IRE_"


def _env_value(text: str, kind: str) -> Any:
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"got {text!r}, expected true or false")
        return text.lower() in ("true", "1")
    try:
        return {"int": int, "float": float, "str": str}[kind](text)
    except ValueError as exc:
        raise ConfigError(f"got {text!r}, expected {kind}") from exc


def apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``IRE_<SECTION>__<KEY>`` variables (e.g. ``IRE_SERVER__LISTEN``) on ``raw``.

    A variable of that form naming an unknown section or key is an error, like an unknown
    key in the file.
    """
    merged = {name: dict(table) if isinstance(table, dict) else table for name, table in raw.items()}
    for var, text in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        section, _, key = var[len(ENV_PREFIX) :].lower().partition("__")
        cls = _SECTION_TYPES.get(section)
        if cls is None:
            raise ConfigError(f"environment {var}: unknown section [{section}]; known: {sorted(_SECTION_TYPES)}")
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        if key not in fields:
            raise ConfigError(f"environment {var}: unknown key {section}.{key}; known: {sorted(fields)}")
        try:
            merged.setdefault(section, {})[key] = _env_value(text, str(fields[key]))
        except ConfigError as exc:
            raise ConfigError(f"environment {var}: {exc}") from exc
    return merged


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate ``path``, with ``IRE_<SECTION>__<KEY>`` environment overrides."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"no config file at {path}; run `ire init` first") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_settings(apply_environment(raw, os.environ if environ is None else environ), str(path))


def render_settings(settings: Settings) -> str:
    """TOML text for ``settings``, every field written out so the file documents itself."""
    lines = ["# IRE configuration. Unknown keys are refused; see supervisor/settings.py for each field."]
    for name in _SECTION_TYPES:
        lines.append(f"\n[{name}]")
        section = getattr(settings, name)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            # JSON string escapes are valid TOML basic-string escapes.
            text = (
                json.dumps(value)
                if isinstance(value, str)
                else str(value).lower()
                if isinstance(value, bool)
                else repr(value)
            )
            lines.append(f"{f.name} = {text}")
    return "\n".join(lines) + "\n"
