"""Translate between recognizer.v1 messages and engine values; nothing else lives here.

A request's `request_id` is echoed back at most MAX_REQUEST_ID_CHARS long, so a caller
cannot make the server repeat megabytes of its own text.
"""

from __future__ import annotations

from collections.abc import Sequence

from recognizer.engine.registry import Change, ChangeKind, ModelVersion, VersionState
from recognizer.engine.stream import (
    Answered,
    Failed,
    Frame,
    FrameResult,
    Skipped,
    StreamPolicy,
    StreamSettings,
)
from recognizer.engine.types import (
    Classification,
    ModelStatus,
    Options,
    Priority,
    QuantizationCheck,
)
from recognizer.errors import InvalidRequestError
from recognizer.models.raw import PixelFormat, RawFrame
from recognizer.service.status import to_status
from recognizer.v1 import recognizer_pb2 as pb

MAX_REQUEST_ID_CHARS = 256

_POLICIES = {
    pb.STREAM_POLICY_UNSPECIFIED: StreamPolicy.EVERY_FRAME,
    pb.STREAM_POLICY_EVERY_FRAME: StreamPolicy.EVERY_FRAME,
    pb.STREAM_POLICY_LATEST_FRAME: StreamPolicy.LATEST_FRAME,
}


def to_options(request: pb.ClassifyRequest) -> Options:
    return Options(
        model=request.model,
        top_k=request.top_k,
        min_score=request.min_score,
        language=request.language,
        priority=to_priority(request.priority),
        model_version=request.model_version,
    )


def to_priority(priority: int) -> Priority | None:
    """The engine's class for a request's priority; None (the default) when unset."""
    if priority == pb.PRIORITY_UNSPECIFIED:
        return None
    if priority not in pb.Priority.values():
        raise InvalidRequestError(f"priority {priority} is not a priority", field="priority")
    return Priority[pb.Priority.Name(priority).removeprefix("PRIORITY_")]


def to_image(request: pb.ClassifyRequest) -> bytes | RawFrame:
    """The request's image: encoded bytes (empty when unset) or a raw frame.

    An unknown pixel format becomes None, which preprocessing refuses for this image only.
    """
    if request.WhichOneof("source") != "raw_image":
        return request.image
    raw = request.raw_image
    name = pb.PixelFormat.Name(raw.format) if raw.format in pb.PixelFormat.values() else ""
    pixel_format = PixelFormat.__members__.get(name.removeprefix("PIXEL_FORMAT_"))
    return RawFrame(raw.width, raw.height, pixel_format, raw.data, raw.row_stride)


def request_id(request: pb.ClassifyRequest) -> str:
    """The id to echo: the request's own, cut to MAX_REQUEST_ID_CHARS."""
    return request.request_id[:MAX_REQUEST_ID_CHARS]


def to_frame(request: pb.ClassifyRequest) -> Frame:
    return Frame(request_id(request), to_image(request), to_options(request))


def to_stream_settings(options: pb.StreamOptions) -> StreamSettings:
    """Read a stream's options from its first request; invalid options end the stream."""
    policy = _POLICIES.get(options.policy)
    if policy is None:
        raise InvalidRequestError(
            f"stream_options.policy {options.policy} is not a stream policy",
            field="stream_options.policy",
        )
    if options.max_frame_age_ms and policy is not StreamPolicy.LATEST_FRAME:
        raise InvalidRequestError(
            "stream_options.max_frame_age_ms applies to STREAM_POLICY_LATEST_FRAME only",
            field="stream_options.max_frame_age_ms",
        )
    age = options.max_frame_age_ms / 1000 if options.max_frame_age_ms else None
    return StreamSettings(policy=policy, max_frame_age_s=age)


def to_response(request_id: str, result: Classification) -> pb.ClassifyResponse:
    timing = result.timing
    return pb.ClassifyResponse(
        request_id=request_id,
        labels=[
            pb.Label(class_id=label.class_id, label=label.name, score=label.score)
            for label in result.labels
        ],
        model=result.model,
        model_version=result.model_version,
        language=result.language,
        timing=pb.Timing(
            queue_us=round(timing.queue_s * 1e6),
            preprocess_us=round(timing.preprocess_s * 1e6),
            inference_us=round(timing.inference_s * 1e6),
            batch_size=timing.batch_size,
            cache_hit=timing.cache_hit,
        ),
    )


def to_frame_response(result: FrameResult) -> pb.ClassifyResponse:
    match result:
        case Answered():
            return to_response(result.request_id, result.classification)
        case Skipped():
            return pb.ClassifyResponse(request_id=result.request_id, skipped=True)
        case Failed():
            return pb.ClassifyResponse(request_id=result.request_id, error=to_status(result.error))


_ACTIVATIONS = {"softmax": pb.ACTIVATION_SOFTMAX, "sigmoid": pb.ACTIVATION_SIGMOID}


_STATES = {
    VersionState.LOADING: pb.MODEL_STATE_LOADING,
    VersionState.READY: pb.MODEL_STATE_READY,
    VersionState.UNLOADING: pb.MODEL_STATE_UNLOADING,
    VersionState.FAILED: pb.MODEL_STATE_FAILED,
}
_CHANGES = {
    ChangeKind.LOADED: pb.MODEL_CHANGE_KIND_LOADED,
    ChangeKind.RELOADED: pb.MODEL_CHANGE_KIND_RELOADED,
    ChangeKind.UNLOADED: pb.MODEL_CHANGE_KIND_UNLOADED,
    ChangeKind.FAILED: pb.MODEL_CHANGE_KIND_FAILED,
}


def to_versions(entries: Sequence[ModelVersion]) -> list[pb.ModelInfo]:
    """Model versions as ListModels and the admin calls answer them: how each runs, when it
    has a runner, and its state."""
    return [_version_info(entry) for entry in entries]


def _version_info(entry: ModelVersion) -> pb.ModelInfo:
    runner = entry.runner
    info = to_model_info(runner.status()) if runner is not None else pb.ModelInfo(name=entry.name)
    info.version = entry.version
    info.state = _STATES[entry.state]
    info.state_reason = entry.reason
    return info


def to_model_change(change: Change) -> pb.ModelChange:
    return pb.ModelChange(
        name=change.name, kind=_CHANGES[change.kind], version=change.version, reason=change.reason
    )


def to_model_info(model: ModelStatus) -> pb.ModelInfo:
    spec = model.spec
    preprocessing = spec.preprocessing
    return pb.ModelInfo(
        name=spec.name,
        version=model.version,
        state=pb.MODEL_STATE_READY,
        num_classes=spec.num_classes,
        input_width=preprocessing.crop,
        input_height=preprocessing.crop,
        device=model.device,
        languages=spec.labels.languages,
        max_batch_size=model.max_batch_size,
        backend=model.backend,
        source_format=spec.source_format,
        architecture=spec.architecture,
        preprocessing=pb.Preprocessing(
            resize=preprocessing.resize,
            crop=preprocessing.crop,
            interpolation=preprocessing.interpolation,
            mean=preprocessing.mean,
            std=preprocessing.std,
            channel_order=preprocessing.channel_order,
        ),
        activation=_ACTIVATIONS[spec.activation],
        precision=model.precision,
        quantization_check=_quantization_check(model.quantization_check),
    )


def _quantization_check(check: QuantizationCheck | None) -> pb.QuantizationCheck | None:
    if check is None:
        return None
    measured, required = check.measured, check.required
    return pb.QuantizationCheck(
        top1_agreement=measured.top1_agreement,
        mean_top5_difference=measured.mean_top5_difference,
        held_out_images=check.held_out_images,
        min_agreement=required.top1_agreement,
        top5_containment=measured.top5_containment,
        min_top5_containment=required.top5_containment,
        max_mean_top5_difference=required.mean_top5_difference,
        reference_change=check.reference_change,
    )
