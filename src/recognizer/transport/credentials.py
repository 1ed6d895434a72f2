"""gRPC server credentials from the certificate files: TLS, or mTLS with a client CA.

grpc's dynamic credentials ask for the certificate on each new connection; the files are
re-read only when they changed (CertificateFiles.current), so a rotation on disk reaches
new connections without a restart, and open connections are left as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import grpc

from recognizer.security.certificates import CertificateFiles, ServerIdentity

logger = logging.getLogger(__name__)


def server_credentials(certificates: CertificateFiles) -> grpc.ServerCredentials:
    """TLS credentials that start from the files' current reading and follow them."""
    served = certificates.current()

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        nonlocal served
        try:
            identity = certificates.current()
        except Exception:  # raised into grpc's handshake, it would only be lost
            logger.exception("cannot check the TLS certificate files")
            return None
        if identity is served:
            return None  # grpc: no change
        served = identity
        return _configuration(identity)

    # grpc takes None for "no change"; its stubs do not say so.
    fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], fetch)
    return grpc.dynamic_ssl_server_credentials(
        _configuration(served),
        fetcher,
        require_client_authentication=served.client_ca is not None,
    )


def _configuration(identity: ServerIdentity) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(identity.private_key, identity.certificate_chain)],
        root_certificates=identity.client_ca,
    )
