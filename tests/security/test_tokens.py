"""The tokens file: its lines, its mistakes named by line, and re-reading it as it changes."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from recognizer.engine.types import Priority
from recognizer.errors import ConfigError, StartupError
from recognizer.security.tokens import Tenant, TokensFile, parse_tokens

SHOP = "q9Xc1kF0b7WvN2yH4tLm8a"
VISION = "Zt8MvA3pQ6rJ1uE5sKx0bw"
VISION_NEXT = "N3w0neF0rR0tat1onXyZ7q"
TOKENS = f"""
# tenant:token [models]
shop:{SHOP}
vision:{VISION}   wanwu, animals     # only these
vision:{VISION_NEXT}	wanwu,animals
cameras:          wanwu
"""


def test_lines_name_tenants_their_tokens_and_their_models() -> None:
    tokens = parse_tokens(TOKENS, "tokens.txt")
    assert tokens.tenant_for(SHOP) == Tenant("shop")
    vision = Tenant("vision", frozenset({"wanwu", "animals"}))
    assert tokens.tenant_for(VISION) == vision == tokens.tenant_for(VISION_NEXT)
    assert tokens.tenants["cameras"] == Tenant("cameras", frozenset({"wanwu"}))
    assert tokens.tenant_for("q9Xc1kF0b7WvN2yH4tLm8b") is None
    assert tokens.tenant_for("") is None
    assert tokens.tenants["shop"].may_use("anything")
    assert vision.may_use("wanwu") and not vision.may_use("efficientnet-lite0")


def test_a_line_may_lower_its_tenants_priority() -> None:
    tokens = parse_tokens(
        f"nightly:{SHOP}  wanwu  priority=low\ncameras:{VISION} priority=High\n", "tokens.txt"
    )
    assert tokens.tenants["nightly"] == Tenant("nightly", frozenset({"wanwu"}), Priority.LOW)
    assert tokens.tenants["cameras"] == Tenant("cameras", None, Priority.HIGH)
    assert parse_tokens(TOKENS, "tokens.txt").tenants["shop"].priority is Priority.HIGH


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"shop {SHOP}", "line 2: expected tenant:token [models]"),
        (f"the shop:{SHOP}", "line 2: expected tenant:token [models]"),
        (f"{'x' * 65}:{SHOP}", "line 2: expected tenant:token"),
        ("shop:short", "line 2: the token has 5 characters; use at least 16"),
        ('shop:has"quote"0123456789', "line 2: a token is letters, digits and -._~+/"),
        (f"vision:{SHOP}", "line 2: this token is already given to tenant 'shop'"),
        (f"shop:{VISION} wanwu", "line 2: tenant 'shop' is given other models"),
        (f"shop:{VISION} priority=low", "line 2: tenant 'shop' is given other models, another"),
        (f"shop:{VISION} admin=yes", "line 2: tenant 'shop' is given other models, another"),
        (f"vision:{VISION} admin=maybe", "line 2: 'admin=maybe' is not a setting"),
        (f"vision:{VISION} priority=urgent", "line 2: 'priority=urgent' is not a setting"),
        (f"vision:{VISION} colour=red", "line 2: 'colour=red' is not a setting"),
    ],
)
def test_a_malformed_line_is_named(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(f"tokens.txt, {message}")):
        parse_tokens(f"shop:{SHOP}\n{line}\n", "tokens.txt")


def test_the_file_is_re_read_when_it_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(f"shop:{SHOP}\n", encoding="utf-8")
    clock = [0.0]
    tokens = TokensFile(path, check_every_s=1.0, clock=lambda: clock[0])
    assert tokens.current().tenant_for(SHOP) == Tenant("shop")

    path.write_text(f"vision:{VISION}\n", encoding="utf-8")
    assert tokens.current().tenant_for(SHOP) is not None  # not looked at again yet
    clock[0] = 1.0
    assert tokens.current().tenant_for(SHOP) is None  # revoked
    assert tokens.current().tenant_for(VISION) == Tenant("vision")

    with caplog.at_level(logging.ERROR):
        path.write_text("vision:short\n", encoding="utf-8")  # a bad edit
        clock[0] = 2.0
        assert tokens.current().tenant_for(VISION) == Tenant("vision")  # the last good one
    assert "keeping the tokens as they were" in caplog.text and "line 1" in caplog.text

    replacement = tmp_path / "tokens.new"
    replacement.write_text(f"shop:{SHOP}\nvision:{VISION}\n", encoding="utf-8")
    os.replace(replacement, path)  # as editors and Kubernetes do: a new file in its place
    clock[0] = 3.0
    assert set(tokens.current().tenants) == {"shop", "vision"}


def test_a_line_may_give_its_tenant_the_admin_right() -> None:
    tokens = parse_tokens(f"deploy:{SHOP}  admin=yes\nshop:{VISION} admin=no\n", "tokens.txt")
    assert tokens.tenants["deploy"].admin
    assert not tokens.tenants["shop"].admin


def test_an_unreadable_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"cannot read the tokens file .*missing"):
        TokensFile(tmp_path / "missing")
    (tmp_path / "bad").write_text("not a line\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad, line 1"):
        TokensFile(tmp_path / "bad")
