"""The server's certificate files: checked when read, and re-read only when they change."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from certificates import Authority, Pki
from recognizer.errors import StartupError
from recognizer.security.certificates import CertificateFiles


def copy(pki: Pki, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(exist_ok=True)
    cert, key = directory / "server.pem", directory / "server.key"
    shutil.copy(pki.server[0], cert)
    shutil.copy(pki.server[1], key)
    return cert, key


def test_a_good_pair_is_read_with_its_client_ca(pki: Pki) -> None:
    identity = CertificateFiles(*pki.server, client_ca=pki.ca).load()
    assert identity.subject == "CN=recognizer"
    assert identity.certificate_chain == pki.server[0].read_bytes()
    assert identity.client_ca == pki.ca.read_bytes()
    assert CertificateFiles(*pki.server).load().client_ca is None


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (lambda p, d: (d / "none.pem", p.server[1], None), "cannot read --tls-cert .*none.pem"),
        (lambda p, d: (p.server[1], p.server[1], None), "--tls-cert .*server.key holds no PEM"),
        (lambda p, d: (p.server[0], p.server[0], None), "--tls-key .*server.pem is not an"),
        (lambda p, d: (p.server[0], p.client[1], None), "client.key is not the key of the"),
        (lambda p, d: (*p.expired, None), "--tls-cert .*expired.pem expired on"),
        (lambda p, d: (*p.server, p.server[1]), "--tls-client-ca .*server.key holds no PEM"),
    ],
)
def test_bad_files_stop_start_up_naming_the_file(
    pki: Pki, tmp_path: Path, files: object, message: str
) -> None:
    cert, key, ca = files(pki, tmp_path)  # type: ignore[operator]
    with pytest.raises(StartupError, match=message):
        CertificateFiles(cert, key, client_ca=ca).load()


def test_a_rotation_is_taken_once_complete(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = copy(pki, tmp_path)
    files = CertificateFiles(cert, key)
    first = files.load()
    assert files.current() is first  # nothing changed: nothing read

    rotated = Authority("next CA").issue("recognizer-2", hosts=("localhost",))
    with caplog.at_level(logging.ERROR):
        cert.write_bytes(rotated.pem)  # the new certificate, still beside the old key
        assert files.current() is first
        assert files.current() is first
    assert caplog.text.count("is not the key of the certificate") == 1  # logged once

    key.write_bytes(rotated.key_pem)
    newer = files.current()
    assert newer.subject == "CN=recognizer-2" != first.subject
    assert files.current() is newer  # for every caller, not only the first to ask
