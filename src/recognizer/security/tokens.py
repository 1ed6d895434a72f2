"""The tokens file: the tenants, the tokens that prove who is calling, and their models.

One line a token, `tenant:token`, then optionally the models the tenant may use, the
highest priority class its requests may take (engine/batching.py; `high` when unsaid) and
whether it may load and unload models (the admin calls; `no` when unsaid):

    # tenant:token [models] [priority=low|normal|high] [admin=yes|no]
    shop:q9Xc1kF0b7WvN2yH4tLm8a                        every model
    vision:Zt8MvA3pQ6rJ1uE5sKx0bw   wanwu,animals      only these two
    vision:N3w0neF0rR0tat1onXyZ7q   wanwu,animals      a second token, to rotate the first
    cameras:                        wanwu              no token: its client certificate
                                                       names it (--tenant-from-cert)
    nightly:Hq2Lw9Xv0cTt5mRj8pZs4e  priority=low       a batch job, behind the cameras
    deploy:Vb7Kq2Ls9Xw4Mz1Nc8Rt5y   admin=yes          rolls models out: load, unload

A tenant's name labels its metrics and scopes its cache, so names are short and plain:
letters, digits, '.', '_' and '-', at most 64. Tokens are RFC 6750 bearer tokens
(letters, digits and -._~+/, then any '='), at least 16 characters; `python -c "import
secrets; print(secrets.token_urlsafe(32))"` makes a good one. Only their SHA-256 digests
are kept, and a token presented is compared with every one of them in constant time.
The file is re-read when it changes; a reading that fails keeps the last good one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from recognizer.engine.types import Priority
from recognizer.errors import ConfigError, StartupError

logger = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
TENANT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
CHECK_EVERY_S = 1.0  # how often a busy server looks at the file's modification time


@dataclass(frozen=True, slots=True)
class Tenant:
    """A caller the tokens file knows; `models` None means every model; `priority` is the
    highest class its requests may take; `admin`, whether it may load and unload models."""

    name: str
    models: frozenset[str] | None = None
    priority: Priority = Priority.HIGH
    admin: bool = False

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class Tokens:
    """One reading of the tokens file: the tenants by name, and the digests of their tokens."""

    tenants: Mapping[str, Tenant]
    digests: tuple[tuple[bytes, str], ...]  # (SHA-256 of a token, its tenant's name)

    def tenant_for(self, token: str) -> Tenant | None:
        """The tenant a token belongs to. Every digest is compared, with no early exit, so the
        time taken says nothing about how close a guess came or which tenant matched."""
        presented = _digest(token)
        found: str | None = None
        for digest, name in self.digests:
            if hmac.compare_digest(digest, presented):
                found = name
        return None if found is None else self.tenants[found]


def parse_tokens(text: str, source: str) -> Tokens:
    """The tokens in the file's text; a malformed line is a ConfigError naming it."""
    tenants: dict[str, Tenant] = {}
    digests: dict[bytes, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}, line {number}"
        head, *rest = line.split(maxsplit=1)
        name, colon, token = head.partition(":")
        if not colon or not TENANT_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: expected tenant:token [models], where the tenant is up to 64"
                " letters, digits, '.', '_' or '-'"
            )
        if token:
            _check_token(token, where)
            digest = _digest(token)
            if digest in digests:
                raise ConfigError(
                    f"{where}: this token is already given to tenant {digests[digest]!r}"
                )
            digests[digest] = name
        words = [w for w in re.split(r"[,\s]+", "".join(rest)) if w]
        models = frozenset(w for w in words if "=" not in w) or None
        priority, admin = _settings([w for w in words if "=" in w], where)
        known = tenants.setdefault(name, Tenant(name, models, priority, admin))
        if (known.models, known.priority, known.admin) != (models, priority, admin):
            raise ConfigError(
                f"{where}: tenant {name!r} is given other models, another priority or another"
                " admin right on an earlier line; give it the same on each of its lines"
            )
    return Tokens(tenants, tuple(digests.items()))


class TokensFile:
    """The tokens file on disk, re-read when it changes: checked at most every
    `check_every_s`, so a busy server looks at the file once a second, not once a call."""

    def __init__(
        self,
        path: Path,
        *,
        check_every_s: float = CHECK_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at = clock()
        self._version = _version(path)
        self._tokens = self._read()

    def current(self) -> Tokens:
        """The tokens as the file now says, or as it last said when it could be read."""
        now = self._clock()
        if now - self._checked_at >= self._check_every_s:
            with self._lock:
                if now - self._checked_at >= self._check_every_s:
                    self._checked_at = now
                    self._reload()
        return self._tokens

    def _reload(self) -> None:
        version = _version(self.path)
        if version == self._version:
            return
        self._version = version
        try:
            self._tokens = self._read()
        except (StartupError, ConfigError) as error:
            logger.error("keeping the tokens as they were: %s", error)
            return
        logger.info("re-read %s: %d tenants", self.path, len(self._tokens.tenants))

    def _read(self) -> Tokens:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise StartupError(f"cannot read the tokens file {self.path}: {error}") from error
        return parse_tokens(text, str(self.path))


def _check_token(token: str, where: str) -> None:
    if not TOKEN.fullmatch(token):
        raise ConfigError(
            f"{where}: a token is letters, digits and -._~+/ (then any '='), as RFC 6750 has it"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{where}: the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS}"
            ' (python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )


def _settings(settings: list[str], where: str) -> tuple[Priority, bool]:
    """The priority and the admin right a line's key=value words set."""
    priority, admin = Priority.HIGH, False
    for setting in settings:
        key, _, value = setting.partition("=")
        if key == "priority" and value.upper() in Priority.__members__:
            priority = Priority[value.upper()]
        elif key == "admin" and value in ("yes", "no"):
            admin = value == "yes"
        else:
            raise ConfigError(
                f"{where}: {setting!r} is not a setting; a line may have"
                " priority=low|normal|high and admin=yes|no"
            )
    return priority, admin


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _version(path: Path) -> tuple[int, ...] | None:
    """What changes when the file does: replaced (inode), rewritten (time, size)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
