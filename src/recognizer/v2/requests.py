"""A v2 inference request without its wire format: its images, its outputs, its answer.

The gRPC servicer and the REST routes read their encodings (protobuf with raw tensor
contents, JSON) into `Input`s, `Requested` outputs and parameters; from there on a request
is the same whichever door it came in by. Each image of a request is one Engine.classify
call, all of them in one flow, so they are admitted, batched, cached and limited exactly
as recognizer.v1's images are; a request fails with the first of its images that fails,
and its other images are given up.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recognizer.engine.engine import Engine
from recognizer.engine.types import Classification, Label, Options
from recognizer.errors import InvalidRequestError, ModelNotFoundError
from recognizer.models.raw import PixelFormat, RawFrame
from recognizer.v2.model import IMAGE, PIXELS, PROBABILITIES, Signature
from recognizer.v2.model import signature as describe

LANGUAGE = "language"  # request parameter: the labels' language (zh by default)
TIMEOUT = "timeout"  # request parameter: microseconds the server may take (tritonclient's)
CLASS_COUNT = "classification"  # output parameter: the top k as classification strings

Parameter = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Input:
    """An input tensor as sent. `data` is a BYTES tensor's elements, or a UINT8 tensor's
    buffer; `field` is where the request holds it (for errors)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Sequence[bytes] | bytes
    field: str


@dataclass(frozen=True, slots=True)
class Requested:
    """An output asked for: the scores themselves, or with `class_count` (the parameter
    "classification") the top k as "score:index:label" strings."""

    name: str
    class_count: int = 0
    field: str = "outputs"


@dataclass(frozen=True, slots=True)
class Output:
    """An output tensor: FP32 scores as an array, or BYTES elements in row-major order."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]


def model_signature(engine: Engine, name: str, version: str, tenant: str) -> Signature:
    """The served model version a request names, if the tenant may use it; "" is the
    default model, and "" its newest ready version."""
    runner = engine.runner_for(name, tenant, model_version(engine, name, version, tenant))
    ready = tuple(entry.version for entry in engine.models.ready(runner.spec.name))
    return describe(runner.status(), runner.queue.max_delay_s, ready)


def model_version(engine: Engine, name: str, version: str, tenant: str) -> int:
    """Triton's version string as the engine's number: "" is 0, the newest ready one."""
    if not version:
        return 0
    if not version.isdigit() or not 0 < int(version) < 2**32:
        raise ModelNotFoundError(f"{name} version {version}", engine.models_for(tenant))
    return int(version)


def model_ready(engine: Engine, name: str, version: str) -> bool:
    """Whether a model version is served, working, and the server ready for it."""
    if engine.not_ready() is not None:
        return False
    try:
        runner = engine.runner(name, model_version(engine, name, version, ""))
    except ModelNotFoundError:
        return False
    return runner.health.serving


def images(inputs: Sequence[Input], model: Signature) -> list[bytes | RawFrame]:
    """The request's images, from IMAGE (encoded) or PIXELS (RGB, NHWC), checked against the
    model's signature and batch limit."""
    for tensor in inputs:
        if tensor.name not in (IMAGE, PIXELS):
            raise InvalidRequestError(
                f"unknown input {tensor.name[:64]!r}; send {IMAGE} (encoded images, BYTES)"
                f" or {PIXELS} (RGB pixels, UINT8 NHWC)",
                field=f"{tensor.field}.name",
            )
    if len(inputs) != 1:
        raise InvalidRequestError(
            f"send one input, {IMAGE} (encoded images, BYTES) or {PIXELS} (RGB pixels, UINT8"
            f" NHWC); this request has {len(inputs)}",
            field="inputs",
        )
    (tensor,) = inputs
    found = _encoded(tensor) if tensor.name == IMAGE else _pixels(tensor)
    if len(found) > model.max_batch_size:
        raise InvalidRequestError(
            f"{len(found)} images in one request; model {model.name!r} takes at most"
            f" {model.max_batch_size} (its max_batch_size)",
            field=f"{tensor.field}.shape",
        )
    return found


def _encoded(tensor: Input) -> list[bytes | RawFrame]:
    _expect(tensor, "BYTES")
    shape = tensor.shape
    if len(shape) not in (1, 2) or shape[0] < 1 or shape[1:] not in ((), (1,)):
        raise InvalidRequestError(
            f"{IMAGE} has shape {list(shape)}; it must be [batch, 1] (or [batch]), one image"
            " an element",
            field=f"{tensor.field}.shape",
        )
    if isinstance(tensor.data, bytes) or len(tensor.data) != shape[0]:
        raise InvalidRequestError(
            f"{IMAGE}'s shape says {shape[0]} images; its data holds"
            f" {_count(tensor.data)} elements",
            field=f"{tensor.field}.data",
        )
    return list(tensor.data)


def _pixels(tensor: Input) -> list[bytes | RawFrame]:
    _expect(tensor, "UINT8")
    shape = tensor.shape
    if len(shape) != 4 or min(shape) < 1 or shape[3] != 3:
        raise InvalidRequestError(
            f"{PIXELS} has shape {list(shape)}; it must be [batch, height, width, 3]",
            field=f"{tensor.field}.shape",
        )
    batch, height, width, _ = shape
    size = height * width * 3
    if not isinstance(tensor.data, bytes) or len(tensor.data) != batch * size:
        raise InvalidRequestError(
            f"{PIXELS} of shape {list(shape)} is {batch * size} bytes; {_count(tensor.data)} came",
            field=f"{tensor.field}.data",
            reason="RAW_SIZE_MISMATCH",
        )
    data = tensor.data
    return [
        RawFrame(width, height, PixelFormat.RGB8, data[i * size : (i + 1) * size])
        for i in range(batch)
    ]


def _expect(tensor: Input, datatype: str) -> None:
    if tensor.datatype != datatype:
        raise InvalidRequestError(
            f"{tensor.name} is {datatype}, not {tensor.datatype[:16]!r}",
            field=f"{tensor.field}.datatype",
        )


def _count(data: Sequence[bytes] | bytes) -> str:
    return f"{len(data)} bytes" if isinstance(data, bytes) else str(len(data))


def options(
    model: Signature, requested: Sequence[Requested], parameters: Mapping[str, Parameter]
) -> tuple[Options, list[Requested]]:
    """How to ask the engine, and the outputs to answer (every output when none is named):
    the labels the largest class_count asks for, and every class's score if an output wants
    them."""
    wanted = list(requested) or [Requested(PROBABILITIES)]
    for output in wanted:
        if output.name not in (PROBABILITIES,):
            raise InvalidRequestError(
                f"unknown output {output.name[:64]!r}; the output is {PROBABILITIES}",
                field=f"{output.field}.name",
            )
        if output.class_count < 0:
            raise InvalidRequestError(
                f"{CLASS_COUNT} must be positive, not {output.class_count}",
                field=f"{output.field}.parameters.{CLASS_COUNT}",
            )
    language = parameters.get(LANGUAGE, "")
    if not isinstance(language, str):
        raise InvalidRequestError(
            f"{LANGUAGE} must be a string, such as zh or en", field=f"parameters.{LANGUAGE}"
        )
    top_k = max(output.class_count for output in wanted)
    scores = any(not output.class_count for output in wanted)
    how = Options(
        model=model.name,
        model_version=model.version,
        top_k=top_k or 1,
        language=language,
        scores=scores,
    )
    return how, wanted


def deadline(parameters: Mapping[str, Parameter], deadline: float | None) -> float | None:
    """The sooner of the call's deadline (a time.monotonic() instant) and the request's
    `timeout` parameter (microseconds; 0 is none)."""
    timeout = parameters.get(TIMEOUT, 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise InvalidRequestError(
            f"{TIMEOUT} must be a whole number of microseconds", field=f"parameters.{TIMEOUT}"
        )
    if not timeout:
        return deadline
    own = time.monotonic() + timeout / 1e6
    return own if deadline is None else min(own, deadline)


async def classify(
    engine: Engine,
    found: Sequence[bytes | RawFrame],
    how: Options,
    *,
    deadline: float | None,
    flow: Hashable,
    tenant: str,
    caller: str,
) -> list[Classification]:
    """Classify every image of a request at once; the first failure fails the request."""
    if len(found) == 1:
        return [
            await engine.classify(
                found[0], how, deadline=deadline, flow=flow, tenant=tenant, caller=caller
            )
        ]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(
                    engine.classify(
                        image, how, deadline=deadline, flow=flow, tenant=tenant, caller=caller
                    )
                )
                for image in found
            ]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def outputs(results: Sequence[Classification], requested: Sequence[Requested]) -> list[Output]:
    """Each requested output of a request's answers, in the order asked."""
    answered = []
    for output in requested:
        if output.class_count:
            rows = [result.labels[: output.class_count] for result in results]
            width = min(len(row) for row in rows)
            data = [classification(label) for row in rows for label in row[:width]]
            answered.append(Output(output.name, "BYTES", (len(rows), width), data))
        else:
            scores = np.stack([_scores(result) for result in results])
            answered.append(Output(output.name, "FP32", scores.shape, scores))
    return answered


def _scores(result: Classification) -> np.ndarray:
    assert result.scores is not None, "the engine was asked for every class's score"
    return result.scores


def classification(label: Label) -> bytes:
    """Triton's classification string, "score:index:label"; the score is the float32 the
    engine answered, written so that it reads back the same."""
    return f"{np.float32(label.score)!s}:{label.class_id}:{label.name}".encode()


def split_bytes(raw: bytes, field: str) -> list[bytes]:
    """The elements of a BYTES tensor's raw contents: each a 4-byte little-endian length,
    then that many bytes."""
    elements, offset = [], 0
    view = memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _malformed(field)
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _malformed(field)
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    return elements


def _malformed(field: str) -> InvalidRequestError:
    return InvalidRequestError(
        "a BYTES tensor's raw contents must be elements of a 4-byte little-endian length"
        " and that many bytes",
        field=field,
    )


def join_bytes(elements: Sequence[bytes]) -> bytes:
    """A BYTES tensor's raw contents, as split_bytes reads them."""
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)
