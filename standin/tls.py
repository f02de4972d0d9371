"""The stand-in's own certificate authority and its server certificate.

azure-core refuses to send a bearer token over plain http, so the stand-in speaks
https on 127.0.0.1 with a certificate from a CA made for this one run. Clients
trust that CA through ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the CA bundle to trust, the server's chain and its key."""

    ca_bundle: Path
    cert_chain: Path
    private_key: Path


def write_tls_files(directory: Path) -> TlsFiles:
    """Creates a fresh CA and a server certificate for loopback, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_bundle=directory / "ca.pem",
        cert_chain=directory / "server.pem",
        private_key=directory / "server-key.pem",
    )

    authority = trustme.CA(organization_name="acr-image-sync stand-in")
    server = authority.issue_cert(*SERVER_NAMES)

    authority.cert_pem.write_to_path(str(files.ca_bundle))
    files.cert_chain.write_bytes(
        b"".join(pem.bytes() for pem in server.cert_chain_pems)
    )
    files.private_key.touch(mode=0o600)
    server.private_key_pem.write_to_path(str(files.private_key))
    return files
