"""Authenticating a caller from its Authorization value or its client certificate's name."""

from __future__ import annotations

from collections.abc import Callable
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


def test_held_calls_end_when_the_file_no_longer_accepts_their_credentials(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    vision = "Zt8MvA3pQ6rJ1uE5sKx0bw"
    path.write_text(f"shop:{SHOP}\nvision:{vision}\ncameras:\n", encoding="utf-8")
    authenticator = Authenticator(TokensFile(path, check_every_s=0), certificate_tenants=True)
    ended: dict[str, str] = {}

    def end(name: str) -> Callable[[UnauthenticatedError], None]:
        return lambda error: ended.setdefault(name, error.reason)

    with (
        authenticator.hold("shop", f"Bearer {SHOP}", None, end("shop")),
        authenticator.hold("vision", f"Bearer {vision}", None, end("vision")),
        authenticator.hold("cameras", None, "cameras", end("cameras")),
    ):
        authenticator.check_held()
        assert ended == {}  # the same reading: nothing to check
        path.write_text(f"shop:{SHOP}\nother:{vision}\n", encoding="utf-8")
        authenticator.check_held()
        assert ended == {"vision": "TOKEN_INVALID", "cameras": "CERTIFICATE_UNKNOWN"}
        authenticator.check_held()
        assert len(ended) == 2  # each ended once
    with authenticator.hold("shop", f"Bearer {SHOP}", None, end("late")):
        pass
    path.write_text("", encoding="utf-8")
    authenticator.check_held()
    assert "late" not in ended and "shop" not in ended  # calls that ended are not held
