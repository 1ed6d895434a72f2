"""Translate between recognizer.v1 messages and engine values; nothing else lives here."""

from __future__ import annotations

from recognizer.engine.stream import Frame, FrameResult
from recognizer.engine.types import Classification, ModelStatus, Options
from recognizer.transport.status import to_status
from recognizer.v1 import recognizer_pb2 as pb


def to_options(request: pb.ClassifyRequest) -> Options:
    return Options(
        model=request.model,
        top_k=request.top_k,
        min_score=request.min_score,
        language=request.language,
    )


def to_frame(request: pb.ClassifyRequest) -> Frame:
    return Frame(request.request_id, request.image, to_options(request))


def to_response(request_id: str, result: Classification) -> pb.ClassifyResponse:
    timing = result.timing
    return pb.ClassifyResponse(
        request_id=request_id,
        labels=[
            pb.Label(class_id=label.class_id, label=label.name, score=label.score)
            for label in result.labels
        ],
        model=result.model,
        language=result.language,
        timing=pb.Timing(
            queue_us=round(timing.queue_s * 1e6),
            preprocess_us=round(timing.preprocess_s * 1e6),
            inference_us=round(timing.inference_s * 1e6),
            batch_size=timing.batch_size,
        ),
    )


def to_frame_response(result: FrameResult) -> pb.ClassifyResponse:
    if result.classification is not None:
        return to_response(result.request_id, result.classification)
    assert result.error is not None
    return pb.ClassifyResponse(request_id=result.request_id, error=to_status(result.error))


_ACTIVATIONS = {"softmax": pb.ACTIVATION_SOFTMAX, "sigmoid": pb.ACTIVATION_SIGMOID}


def to_model_info(model: ModelStatus) -> pb.ModelInfo:
    spec = model.spec
    preprocessing = spec.preprocessing
    return pb.ModelInfo(
        name=spec.name,
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
    )
