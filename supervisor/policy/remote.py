"""The remote engine: an OPA server (a sidecar in Kubernetes) over its REST data API.

Calls go through ``opa-python-client``'s AsyncOpaClient, over TLS verified against the
configured CA, with a bearer token, no retries, and one bounded timeout per decision.
Every failure (refused connection, TLS error, HTTP error, timeout, no result) is a
PolicyEngineError, so the call is refused.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from opa_client import AsyncOpaClient  # type: ignore[import-untyped]

from supervisor.errors import ConfigError
from supervisor.policy.engine import Evaluation, Query
from supervisor.policy.errors import PolicyEngineError

__all__ = ["RemoteEngine", "parse_opa_url"]

_OPA_DEFAULT_PORT = 8181
#: Revision recorded when the OPA server does not report its bundle revisions.
UNKNOWN_REVISION = "remote:unknown"


def parse_opa_url(url: str) -> tuple[str, int]:
    """Host and port of an ``https://host[:port]`` URL; plain HTTP is refused."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ConfigError(f"policy.remote_url: got scheme {parts.scheme!r}, expected 'https' (TLS is required)")
    if not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"policy.remote_url: got {url!r}, expected https://HOST[:PORT] with no path")
    return parts.hostname, parts.port or _OPA_DEFAULT_PORT


class _TlsOpaClient(AsyncOpaClient):  # type: ignore[misc]
    """AsyncOpaClient whose session trusts our CA (the stock one only loads system CAs)."""

    def __init__(self, host: str, port: int, token: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host=host, port=port, ssl=True, token=token, retries=0, timeout=timeout)
        self._context = context

    async def _init_session(self) -> None:
        self._connector = aiohttp.TCPConnector(ssl=self._context)
        self._session = aiohttp.ClientSession(
            headers=self.headers, connector=self._connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
        )


def _revision(provenance: Any) -> str:
    """OPA's provenance names the revision of each bundle it serves."""
    if not isinstance(provenance, dict):
        return UNKNOWN_REVISION
    bundles = provenance.get("bundles")
    if isinstance(bundles, dict):
        revisions = [f"{name}={b.get('revision', '')}" for name, b in sorted(bundles.items()) if isinstance(b, dict)]
        if revisions:
            return "remote:" + ",".join(revisions)
    legacy = provenance.get("revision")
    return f"remote:{legacy}" if isinstance(legacy, str) and legacy else UNKNOWN_REVISION


class RemoteEngine:
    name = "remote"

    def __init__(self, url: str, token: str, ca_file: str, timeout_seconds: float) -> None:
        self._host, self._port = parse_opa_url(url)
        if not token:
            raise ConfigError("policy.remote_token_file holds no token; the OPA server needs a bearer token")
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"policy.remote_ca_file: cannot load {ca_file}: {exc}") from exc
        self._client = _TlsOpaClient(self._host, self._port, token, timeout_seconds, context)
        self._timeout = timeout_seconds
        self._started = False
        self._revision = ""

    @property
    def revision(self) -> str:
        """The revision in the OPA server's most recent answer ('' before the first)."""
        return self._revision

    async def evaluate(self, query: Query, document: Mapping[str, Any]) -> Evaluation:
        if not self._started:
            await self._client._init_session()
            self._started = True
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.query_rule(
                    dict(document), query.value, "decision", query_params={"provenance": "true"}
                )
        except TimeoutError as exc:
            raise PolicyEngineError(f"OPA gave no decision within {self._timeout} s", "timeout") from exc
        except aiohttp.ClientResponseError as exc:
            raise PolicyEngineError(f"OPA answered HTTP {exc.status}", "http") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise PolicyEngineError(f"OPA at {self._host}:{self._port} is unreachable: {exc!r}", "unreachable") from exc
        if not isinstance(response, dict):
            raise PolicyEngineError(f"OPA answered {type(response).__name__}, expected an object", "http")
        self._revision = _revision(response.get("provenance"))
        # OPA omits "result" when the rule is undefined: that is no decision, not a deny.
        return Evaluation(response.get("result"), self._revision)

    def stable_revision(self, query: Query) -> str | None:
        return None  # OPA decides every call; its own caches are OPA's business

    async def close(self) -> None:
        if self._started:
            await self._client.close_connection()
