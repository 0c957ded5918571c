"""TLS and mTLS for the gRPC listener, with certificates reloaded from files on change.

gRPC asks :meth:`CertificateFiles.fetch` on every new handshake; it compares the files'
modification times and sizes (a stat each, no read) and hands over a new configuration
only when they changed and the new files parse. A half-written or mismatched renewal
keeps the previous certificate in force and is logged, rather than taking the listener
down. Plain text outside loopback is refused unless ``server.unsafe_plaintext``.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from supervisor.errors import ConfigError
from supervisor.settings import TlsSettings

log = structlog.get_logger(__name__)

__all__ = ["CertificateFiles", "is_loopback", "server_credentials"]


def is_loopback(listen: str) -> bool:
    """Whether ``HOST:PORT`` binds only the loopback interface."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class _Material:
    key: bytes
    chain: bytes
    client_ca: bytes | None
    stamp: tuple[tuple[int, int], ...]


def _check(key: bytes, chain: bytes, client_ca: bytes | None) -> None:
    """Refuse material gRPC would fail on only at the next handshake."""
    try:
        certificate = x509.load_pem_x509_certificates(chain)[0]
        private = serialization.load_pem_private_key(key, password=None)
        if client_ca is not None:
            x509.load_pem_x509_certificates(client_ca)
    except (ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"TLS material does not parse: {exc}") from exc
    mine = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if mine != theirs:
        raise ConfigError("TLS key_file does not match the first certificate of cert_file")


class CertificateFiles:
    """The server's key, certificate chain and client CA, as files that may be renewed."""

    def __init__(self, tls: TlsSettings, root: Path) -> None:
        if not tls.cert_file or not tls.key_file:
            raise ConfigError("[tls] needs both cert_file and key_file")
        self._paths = [root / tls.key_file, root / tls.cert_file]
        if tls.client_ca_file:
            self._paths.append(root / tls.client_ca_file)
        self.require_client_cert = bool(tls.client_ca_file)
        self._lock = threading.Lock()
        self._current = self._load()

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        stats = [os.stat(p) for p in self._paths]
        return tuple((s.st_mtime_ns, s.st_size) for s in stats)

    def _load(self) -> _Material:
        try:
            stamp = self._stamp()
            key, chain, *rest = (p.read_bytes() for p in self._paths)
        except OSError as exc:
            raise ConfigError(f"cannot read TLS material: {exc}") from exc
        client_ca = rest[0] if rest else None
        _check(key, chain, client_ca)
        return _Material(key, chain, client_ca, stamp)

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        material = self._current
        return grpc.ssl_server_certificate_configuration(
            [(material.key, material.chain)], root_certificates=material.client_ca
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's per-handshake hook: a new configuration when the files changed, else None."""
        with self._lock:
            try:
                if self._stamp() == self._current.stamp:
                    return None
                self._current = self._load()
            except ConfigError as exc:
                log.error("TLS files changed but cannot be used; keeping the previous certificate", error=str(exc))
                return None
            except OSError as exc:
                log.error("TLS files cannot be read; keeping the previous certificate", error=str(exc))
                return None
            log.info("TLS certificate reloaded", files=[str(p) for p in self._paths])
            return self.configuration()


def server_credentials(tls: TlsSettings, root: Path) -> grpc.ServerCredentials:
    files = CertificateFiles(tls, root)
    return grpc.dynamic_ssl_server_credentials(
        files.configuration(), files.fetch, require_client_authentication=files.require_client_cert
    )
