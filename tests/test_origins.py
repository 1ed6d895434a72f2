"""Origins written one way, and the setting that lists the allowed ones."""

from __future__ import annotations

import pytest

from recognizer.config.sources import load_config
from recognizer.errors import ConfigError
from recognizer.origins import origin


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443/", "https://app.example.com"),
        ("http://localhost:80", "http://localhost"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_an_origin_is_written_one_way(text: str, written: str) -> None:
    assert origin(text) == written


@pytest.mark.parametrize(
    "text", ["null", "app.example.com", "ftp://app.example.com", "https://a.com/page", "https://"]
)
def test_what_is_not_an_origin_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        origin(text)


def test_the_allowed_origins_come_comma_separated_or_as_a_list() -> None:
    flags = {"http_allowed_origins": "https://App.example.com:443, http://localhost:3000"}
    assert load_config(flags, {}).server.http_allowed_origins == (
        "https://app.example.com",
        "http://localhost:3000",
    )
    assert load_config(
        {"http_allowed_origins": ["https://a.example"]}, {}
    ).server.http_allowed_origins == ("https://a.example",)
    assert load_config({}, {}).server.http_allowed_origins == ()
    with pytest.raises(ConfigError, match=r"RECOGNIZER_HTTP_ALLOWED_ORIGINS: .* is not an origin"):
        load_config({}, {"RECOGNIZER_HTTP_ALLOWED_ORIGINS": "https://a.com/x"})
