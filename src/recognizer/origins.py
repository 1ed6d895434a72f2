"""Web origins (scheme://host[:port]), written one way so that two can be compared.

A browser names the page that makes a request in its `Origin` header; a server compares
it with its own origin, the scheme it serves and the `Host` the browser dialled. RFC 6454
compares the scheme, the host and the port, so both sides are lowercased and a default
port (80 for http, 443 for https) is left out.

Usage:

    origin("https://App.example.com:443")   # "https://app.example.com"
    origin("https://app.example.com/page")  # ValueError: an origin has no path
"""

from __future__ import annotations

import urllib.parse

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(text: str) -> str:
    """The origin `text` names, normalised; a ValueError says what is wrong with it."""
    try:
        parts = urllib.parse.urlsplit(text.strip())
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{text!r} is not an origin: {error}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{text!r} is not an origin: write http://HOST[:PORT] or https://...")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} is not an origin: it is scheme://host[:port] and no more")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"
