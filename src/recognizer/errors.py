"""Errors, each saying what the caller or the operator can do about it.

Raised while serving a request:

    RecognizerError
    ├── UnauthenticatedError     no valid credentials: send a token (or a client certificate)
    ├── PermissionDeniedError    the caller's tenant may not use the model: pick one it may
    ├── InvalidRequestError      a field of the request is wrong: fix the request
    │   └── InvalidImageError    the image cannot be used: send another
    ├── ModelNotFoundError       the named model is not served: pick a served one
    ├── OverloadedError          too much asked at once: retry after `retry_after_s`
    │   ├── RateLimitedError     the caller is over its request rate
    │   └── TooManyCallsError    the caller holds its share of the server's calls
    ├── DeadlineExceededError    the caller's deadline passed before inference
    ├── ModelUnavailableError    the model is not working now: go to another replica
    ├── ShuttingDownError        the server is draining: go to another replica
    ├── AdminRequiredError       a model admin call without the admin right
    ├── ModelChangeError         a model admin call that cannot be done: see its reason
    └── NotEnoughMemoryError     loading a version would not fit: unload one first

The engine and the security package raise these without knowing about gRPC; the
transport maps each class to one canonical status code. Text a caller sent is quoted in
messages through `quoted`, which caps its length: an error never echoes a megabyte back.

Raised at start-up, when the server must not start:

    StartupError
    ├── ConfigError              the configuration is malformed: an unknown key, a bad value
    ├── ModelLoadError           a configured model cannot be loaded
    └── BackendError             a model cannot run on the backend or device asked for
        └── QuantizationError    an int8 model agrees with fp32 less than required
"""

from __future__ import annotations

from collections.abc import Sequence

QUOTED_CHARS = 64  # the most of a caller's text an error message repeats


def quoted(text: str, limit: int = QUOTED_CHARS) -> str:
    """`text` as repr() writes it, cut to `limit` characters and saying by how much."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class RecognizerError(Exception):
    """Base class: `reason` is a stable UPPER_SNAKE_CASE identifier for programs."""

    reason = "RECOGNIZER_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class UnauthenticatedError(RecognizerError):
    """The call carries no credentials, or credentials that name no tenant.

    Reasons: CREDENTIALS_MISSING (no token, and no client certificate that names a
    tenant), TOKEN_INVALID (not `Bearer TOKEN`, or a token the tokens file does not hold:
    wrong or revoked), CERTIFICATE_UNKNOWN (the client certificate names no tenant).
    """

    reason = "TOKEN_INVALID"


class PermissionDeniedError(RecognizerError):
    """A known tenant asked for a model its tokens file line does not list."""

    reason = "MODEL_NOT_ALLOWED"

    def __init__(self, tenant: str, model: str, allowed: Sequence[str]) -> None:
        super().__init__(
            f"tenant {tenant!r} may not use model {quoted(model)}; it may use:"
            f" {', '.join(allowed) or 'no served model'}"
        )
        self.tenant = tenant
        self.model = model


class InvalidRequestError(RecognizerError):
    """A request field has a value the server cannot accept."""

    reason = "INVALID_REQUEST"

    def __init__(self, message: str, *, field: str, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.field = field


class InvalidImageError(InvalidRequestError):
    """The image bytes are empty, not an image, corrupt, too large or too costly to decode."""

    reason = "IMAGE_INVALID"

    def __init__(self, message: str, *, reason: str, field: str = "image") -> None:
        super().__init__(message, field=field, reason=reason)


class ModelNotFoundError(RecognizerError):
    """The request names a model this server does not serve."""

    reason = "MODEL_NOT_FOUND"

    def __init__(self, name: str, served: Sequence[str]) -> None:
        super().__init__(f"model {quoted(name)} is not served; served models: {', '.join(served)}")
        self.name = name[:QUOTED_CHARS]  # echoed in ResourceInfo
        self.served = tuple(served)


class OverloadedError(RecognizerError):
    """The model's queue is full, or the caller holds more than its share of it; the
    request was refused without waiting."""

    reason = "QUEUE_FULL"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(f"{message}; retry after {retry_after_s:.2f}s or reduce concurrency")
        self.retry_after_s = retry_after_s


class RateLimitedError(OverloadedError):
    """The caller sent more requests than its rate limit allows."""

    reason = "RATE_LIMITED"


class TooManyCallsError(OverloadedError):
    """The server runs --max-concurrent-rpcs calls and streams at once, and this caller
    holds its share of them (or gave up its newest to a caller within its share)."""

    reason = "TOO_MANY_CALLS"


class DeadlineExceededError(RecognizerError):
    """The caller's deadline passed before the request reached the model."""

    reason = "DEADLINE_EXCEEDED"


def first_frame_late(timeout: float) -> DeadlineExceededError:
    """A stream (gRPC or WebSocket) that sent no frame within `timeout` of opening."""
    return DeadlineExceededError(
        f"no frame came within {timeout:g}s of opening the stream", reason="FIRST_FRAME_TIMEOUT"
    )


def stream_idle(timeout: float) -> DeadlineExceededError:
    """A stream that sent no frame for `timeout`, and is ended."""
    return DeadlineExceededError(
        f"no frame came for {timeout:g}s: an idle stream is ended", reason="STREAM_IDLE"
    )


class ModelUnavailableError(RecognizerError):
    """The model has stopped working (its calls hang or fail): another replica may serve."""

    reason = "MODEL_UNAVAILABLE"

    def __init__(self, model: str, why: str) -> None:
        super().__init__(f"model {model!r} is not serving: {why}; retry on another replica")


class AdminRequiredError(RecognizerError):
    """A model admin call from a caller without the admin right."""

    reason = "ADMIN_REQUIRED"


class ModelChangeError(RecognizerError):
    """A model admin call that cannot be done as asked: a version that fails to load (what
    served before still does; reason MODEL_LOAD_FAILED), unloading the default model's
    last version (DEFAULT_MODEL), or a configuration that no longer reads
    (CONFIG_INVALID)."""

    reason = "MODEL_LOAD_FAILED"


class NotEnoughMemoryError(RecognizerError):
    """Loading a model version would take more memory than the process may still use."""

    reason = "NOT_ENOUGH_MEMORY"


class ShuttingDownError(RecognizerError):
    """The server is draining and accepts no new work."""

    reason = "SHUTTING_DOWN"

    def __init__(self) -> None:
        super().__init__("the server is shutting down; retry on another replica")


def without_tracebacks(error: BaseException) -> BaseException:
    """`error`, and the errors it was raised from, with their tracebacks dropped: an error
    kept past its call (a job's result, a call's status) would otherwise keep the frames
    it passed through, and their requests, in a cycle only a full collection frees."""
    link: BaseException | None = error
    while link is not None:
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return error


class StartupError(Exception):
    """The configuration cannot be served; the message says what to fix."""


class ConfigError(StartupError):
    """A flag, environment variable or config file says something that cannot be meant."""


class ModelLoadError(StartupError):
    """A configured model cannot be loaded: a missing file, an unknown format, a bad fit."""


class BackendError(StartupError):
    """A model cannot run on the backend or device asked for."""


class QuantizationError(BackendError):
    """A quantised model falls short of the agreement with fp32 it must reach to serve."""
