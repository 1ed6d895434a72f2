"""The pieces of a v2 request every door shares: BYTES tensors, classification strings,
and our stubs being the very files tritonclient registers."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as their_config
from tritonclient.grpc import service_pb2 as their_service
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from recognizer.engine.types import Label
from recognizer.errors import InvalidRequestError
from recognizer.v2 import requests
from recognizer.v2.inference import grpc_service_pb2, model_config_pb2


def test_our_stubs_are_the_files_tritonclient_registers() -> None:
    """proto/triton is the commit whose descriptors tritonclient ships, so both can be
    imported by one process (protobuf refuses a second, different file of the same name)."""
    assert grpc_service_pb2.DESCRIPTOR.serialized_pb == their_service.DESCRIPTOR.serialized_pb
    assert model_config_pb2.DESCRIPTOR.serialized_pb == their_config.DESCRIPTOR.serialized_pb


def test_bytes_tensors_read_and_write_as_tritonclient_does() -> None:
    elements = [b"", b"\xff\xd8jpeg", "标签".encode()]
    theirs = serialize_byte_tensor(np.array(elements, dtype=np.object_)).item()
    assert requests.join_bytes(elements) == theirs
    assert requests.split_bytes(theirs, "raw") == elements
    assert list(deserialize_bytes_tensor(requests.join_bytes(elements))) == elements


@pytest.mark.parametrize("raw", [b"\x05\x00\x00\x00abc", b"\x01\x00"], ids=["short", "torn"])
def test_malformed_bytes_contents_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        requests.split_bytes(raw, "raw_input_contents[0]")
    assert raised.value.field == "raw_input_contents[0]"


def test_a_classification_string_reads_back_the_same_float32() -> None:
    score = float(np.float32(0.123456789))
    text = requests.classification(Label(967, "浓缩咖啡", score)).decode()
    value, index, label = text.split(":", 2)
    assert np.float32(value) == np.float32(score)
    assert (index, label) == ("967", "浓缩咖啡")
