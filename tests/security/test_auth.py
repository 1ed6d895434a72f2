"""Authenticating a caller from its Authorization value or its client certificate's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from recognizer.errors import UnauthenticatedError
from recognizer.security.auth import Authenticator, bearer_token
from recognizer.security.tokens import Tenant, TokensFile

SHOP = "q9Xc1kF0b7WvN2yH4tLm8a"


@pytest.fixture
def tokens(tmp_path: Path) -> TokensFile:
    (tmp_path / "tokens").write_text(f"shop:{SHOP}\ncameras: wanwu\n", encoding="utf-8")
    return TokensFile(tmp_path / "tokens")


def reason(call: object) -> str:
    with pytest.raises(UnauthenticatedError) as raised:
        call()  # type: ignore[operator]
    return raised.value.reason


def test_a_bearer_token_names_its_tenant(tokens: TokensFile) -> None:
    authenticator = Authenticator(tokens)
    assert authenticator.authenticate(f"Bearer {SHOP}") == Tenant("shop")
    assert authenticator.authenticate(f"bearer  {SHOP} ") == Tenant("shop")
    assert reason(lambda: authenticator.authenticate(None)) == "CREDENTIALS_MISSING"
    assert reason(lambda: authenticator.authenticate(f"Basic {SHOP}")) == "TOKEN_INVALID"
    assert reason(lambda: authenticator.authenticate("Bearer")) == "TOKEN_INVALID"
    assert reason(lambda: authenticator.authenticate(f"Bearer {SHOP}x")) == "TOKEN_INVALID"
    # Without --tenant-from-cert a certificate names nobody.
    assert reason(lambda: authenticator.authenticate(None, "cameras")) == "CREDENTIALS_MISSING"


def test_a_client_certificate_can_name_the_tenant(tokens: TokensFile) -> None:
    authenticator = Authenticator(tokens, certificate_tenants=True)
    assert authenticator.authenticate(None, "cameras").name == "cameras"
    assert authenticator.authenticate(f"Bearer {SHOP}", "cameras").name == "shop"  # a token wins
    assert reason(lambda: authenticator.authenticate(None, "acme")) == "CERTIFICATE_UNKNOWN"
    assert reason(lambda: authenticator.authenticate("Bearer wrong", "cameras")) == "TOKEN_INVALID"


def test_tenants_may_use_their_models(tokens: TokensFile) -> None:
    authenticator = Authenticator(tokens)
    assert authenticator.may_use("shop", "wanwu") and authenticator.may_use("shop", "other")
    assert authenticator.may_use("cameras", "wanwu")
    assert not authenticator.may_use("cameras", "efficientnet-lite0")
    assert not authenticator.may_use("nobody", "wanwu")


def test_the_bearer_scheme_is_read_in_any_case() -> None:
    assert bearer_token("BEARER abc") == "abc"
    with pytest.raises(UnauthenticatedError, match="must be Bearer TOKEN"):
        bearer_token("abc")
