"""Translate between Triton's protobuf messages and the v2 request's plain values.

Tensors travel as tritonclient and perf_analyzer send them, in `raw_input_contents` (BYTES
elements each behind a 4-byte length), or in the typed `contents`; answers go back in
`raw_output_contents`, which is all tritonclient reads.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

import recognizer
from recognizer.errors import InvalidRequestError
from recognizer.v2.inference import grpc_service_pb2 as pb
from recognizer.v2.inference import model_config_pb2 as config_pb
from recognizer.v2.model import EXTENSIONS, PLATFORM, SERVER_NAME, Signature, Tensor
from recognizer.v2.requests import (
    CLASS_COUNT,
    Input,
    Output,
    Parameter,
    Requested,
    join_bytes,
    split_bytes,
)
from recognizer.v2.statistics import Duration, Tally

_CONFIG_TYPES = {"BYTES": "TYPE_STRING", "UINT8": "TYPE_UINT8", "FP32": "TYPE_FP32"}


def server_metadata() -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=SERVER_NAME, version=recognizer.__version__, extensions=EXTENSIONS
    )


def model_metadata(model: Signature) -> pb.ModelMetadataResponse:
    def tensor(spec: Tensor) -> pb.ModelMetadataResponse.TensorMetadata:
        return pb.ModelMetadataResponse.TensorMetadata(
            name=spec.name, datatype=spec.datatype, shape=spec.shape
        )

    return pb.ModelMetadataResponse(
        name=model.name,
        versions=[str(version) for version in model.versions],
        platform=PLATFORM,
        inputs=[tensor(spec) for spec in model.inputs],
        outputs=[tensor(spec) for spec in model.outputs],
    )


def model_config(model: Signature) -> pb.ModelConfigResponse:
    """What perf_analyzer reads: the batch limit, the tensors (both inputs optional: a
    request sends one), the image input's layout, and the batching."""
    return pb.ModelConfigResponse(
        config=config_pb.ModelConfig(
            name=model.name,
            platform=PLATFORM,
            backend=model.backend,
            max_batch_size=model.max_batch_size,
            input=[
                config_pb.ModelInput(
                    name=spec.name,
                    data_type=_CONFIG_TYPES[spec.datatype],
                    format=spec.format or "FORMAT_NONE",
                    dims=spec.dims,
                    optional=spec.optional,
                )
                for spec in model.inputs
            ],
            output=[
                config_pb.ModelOutput(
                    name=spec.name, data_type=_CONFIG_TYPES[spec.datatype], dims=spec.dims
                )
                for spec in model.outputs
            ],
            dynamic_batching=config_pb.ModelDynamicBatching(
                max_queue_delay_microseconds=model.batch_delay_us
            ),
        )
    )


def parameters(sent: Mapping[str, pb.InferParameter]) -> dict[str, Parameter]:
    """A request's parameters as plain values (priority, sequence ids and the like are read
    and ignored)."""
    values: dict[str, Parameter] = {}
    for name, parameter in sent.items():
        kind = parameter.WhichOneof("parameter_choice")
        if kind is not None:
            values[name] = getattr(parameter, kind)
    return values


def inputs(request: pb.ModelInferRequest) -> list[Input]:
    """The request's input tensors, from `raw_input_contents` when it has them (one per
    input, in order), else from each input's `contents`."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequestError(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; send one each",
            field="raw_input_contents",
        )
    found = []
    for index, tensor in enumerate(request.inputs):
        field = f"inputs[{index}]"
        data: list[bytes] | bytes
        if raw:
            at = f"raw_input_contents[{index}]"
            data = split_bytes(raw[index], at) if tensor.datatype == "BYTES" else raw[index]
        elif tensor.datatype == "BYTES":
            data = list(tensor.contents.bytes_contents)
        else:
            data = _uint8(tensor.contents.uint_contents, f"{field}.contents.uint_contents")
        found.append(Input(tensor.name, tensor.datatype, tuple(tensor.shape), data, field))
    return found


def _uint8(values: object, field: str) -> bytes:
    array = np.asarray(values, dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() > 255):
        raise InvalidRequestError("UINT8 values must be within [0, 255]", field=field)
    return array.astype(np.uint8).tobytes()


def requested(request: pb.ModelInferRequest) -> list[Requested]:
    found = []
    for index, output in enumerate(request.outputs):
        class_count = parameters(output.parameters).get(CLASS_COUNT, 0)
        if isinstance(class_count, bool) or not isinstance(class_count, int):
            raise InvalidRequestError(
                f"{CLASS_COUNT} must be a whole number",
                field=f"outputs[{index}].parameters.{CLASS_COUNT}",
            )
        found.append(Requested(output.name, class_count, f"outputs[{index}]"))
    return found


def infer_response(
    request: pb.ModelInferRequest, model: Signature, outputs: list[Output]
) -> pb.ModelInferResponse:
    """The answer, every output's data in raw_output_contents (FP32 little-endian)."""
    return pb.ModelInferResponse(
        model_name=model.name,
        model_version=str(model.version),
        id=request.id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name=output.name, datatype=output.datatype, shape=output.shape
            )
            for output in outputs
        ],
        raw_output_contents=[_raw(output) for output in outputs],
    )


def _raw(output: Output) -> bytes:
    if isinstance(output.data, list):
        return join_bytes(output.data)
    return np.ascontiguousarray(output.data, dtype="<f4").tobytes()


def model_statistics(
    model: str, version: int, tally: Tally, batch_sizes: Mapping[int, int]
) -> pb.ModelStatistics:
    """Triton's statistics of one model: the requests from `tally`, and the model's batches
    and the images in them from the engine."""

    def duration(value: Duration) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=value.count, ns=value.ns)

    return pb.ModelStatistics(
        name=model,
        version=str(version),
        last_inference=tally.last_inference_ms,
        inference_count=sum(size * count for size, count in batch_sizes.items()),
        execution_count=sum(batch_sizes.values()),
        inference_stats=pb.InferStatistics(
            success=duration(tally.success),
            fail=duration(tally.fail),
            queue=duration(tally.queue),
            compute_input=duration(tally.compute_input),
            compute_infer=duration(tally.compute_infer),
            compute_output=duration(tally.compute_output),
        ),
    )
