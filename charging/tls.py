"""TLS and mutual TLS for the node's gRPC listeners (`ccs serve --tls-cert --tls-key
[--tls-client-ca]`).

The files are read and checked once, before anything listens: a missing, unreadable or
malformed file, a key that does not match its certificate, or one option without the others
is a `TlsError` naming the option (the CLI prints it on one line and exits 2). The same
credentials serve every gRPC listener of the node (Charging and admin).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import grpc

MAX_PEM_BYTES = 1 << 20  # a certificate chain or key file larger than 1 MiB is not one


class TlsError(ValueError):
    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option


@dataclass(frozen=True)
class TlsFiles:
    """PEM bytes of the server's certificate chain and key, and of the client CA (mTLS)."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    def server_credentials(self) -> grpc.ServerCredentials:
        """With a client CA, clients must present a certificate it signed (mutual TLS)."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None)


def _read(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise TlsError(option, f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PEM_BYTES:
        raise TlsError(option, f"{path} is larger than {MAX_PEM_BYTES} bytes")
    return data


def _check_certificates(data: bytes, path: str, option: str) -> None:
    """`data` holds at least one PEM certificate that OpenSSL parses."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise TlsError(option, f"{path} is not a PEM certificate file") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise TlsError(option, f"{path} has no PEM certificate (BEGIN CERTIFICATE)")
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise TlsError(option, f"{path}: not a valid PEM certificate ({exc})") from None


def load_tls(cert: str | None, key: str | None, client_ca: str | None = None) -> TlsFiles | None:
    """The node's TLS files, checked; None when no TLS option is given."""
    if cert is None and key is None and client_ca is None:
        return None
    if cert is None:
        raise TlsError("--tls-key" if key is not None else "--tls-client-ca",
                       "needs --tls-cert (the server's certificate)")
    if key is None:
        raise TlsError("--tls-cert", "needs --tls-key (the certificate's private key)")
    cert_pem = _read(cert, "--tls-cert")
    _check_certificates(cert_pem, cert, "--tls-cert")
    key_pem = _read(key, "--tls-key")
    if b"PRIVATE KEY-----" not in key_pem:
        raise TlsError("--tls-key", f"{key} has no PEM private key (BEGIN PRIVATE KEY)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # a password callable that gives none: an encrypted key fails instead of prompting
        ctx.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise TlsError("--tls-key", f"{key} does not match the certificate in {cert}") \
                from None
        raise TlsError("--tls-key", f"{key}: not a usable unencrypted PEM private key "
                       f"({exc})") from None
    ca_pem = None
    if client_ca is not None:
        ca_pem = _read(client_ca, "--tls-client-ca")
        _check_certificates(ca_pem, client_ca, "--tls-client-ca")
    return TlsFiles(cert_pem, key_pem, ca_pem)
