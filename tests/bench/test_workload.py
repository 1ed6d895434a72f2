"""The requests the load generator builds: encoded images, raw RGB8 frames, distinct images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from images import encode, with_exif_rotation
from recognizer.bench import BenchError
from recognizer.bench.workload import RequestCycle, Workload, find_images, raw_rgb8
from recognizer.models.preprocessing import Preprocessing, decode_image, prepare_input, to_rgb
from recognizer.v1 import recognizer_pb2 as pb
from support import PHOTOS


def test_a_raw_frame_is_the_decoded_image_as_packed_rgb8() -> None:
    data = PHOTOS["hopper"].read_bytes()
    frame = raw_rgb8(data)
    expected = Image.open(io.BytesIO(data)).convert("RGB")
    assert (frame.width, frame.height) == expected.size
    assert frame.format == pb.PIXEL_FORMAT_RGB8
    assert frame.row_stride == frame.width * 3
    assert len(frame.data) == frame.row_stride * frame.height
    pixels = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 3)
    assert np.array_equal(pixels, np.asarray(expected))


def test_a_raw_frame_is_upright_and_rgb_whatever_the_file() -> None:
    photo = Image.open(PHOTOS["cat"]).convert("RGB")
    rotated = raw_rgb8(with_exif_rotation(photo))
    assert (rotated.width, rotated.height) == photo.size  # EXIF orientation applied
    gray = raw_rgb8(PHOTOS["camera"].read_bytes())
    assert gray.format == pb.PIXEL_FORMAT_RGB8 and len(gray.data) == gray.width * gray.height * 3


def test_the_workload_builds_one_request_per_image_with_its_options() -> None:
    paths = (str(PHOTOS["coffee"]), str(PHOTOS["cat"]))
    encoded = Workload(images=paths, model="m", top_k=3).requests()
    assert [r.image for r in encoded] == [Path(p).read_bytes() for p in paths]
    assert all((r.model, r.top_k, r.WhichOneof("source")) == ("m", 3, "image") for r in encoded)
    raw = Workload(images=paths, raw=True).requests()
    assert [r.WhichOneof("source") for r in raw] == ["raw_image", "raw_image"]
    assert raw[0].raw_image == raw_rgb8(Path(paths[0]).read_bytes())


def test_a_broken_image_cannot_be_sent_raw() -> None:
    with pytest.raises(BenchError, match="cannot decode"):
        raw_rgb8(b"not an image")


def test_images_are_found_in_folders_by_suffix_and_named_files_as_given(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.PNG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    named = tmp_path / "frame.bin"
    named.write_bytes(b"x")
    found = find_images([tmp_path, named])
    assert found == (str(tmp_path / "a.PNG"), str(tmp_path / "b.jpg"), str(named))
    with pytest.raises(BenchError, match="no such file"):
        find_images([tmp_path / "missing"])
    with pytest.raises(BenchError, match="no image files"):
        find_images([tmp_path / "sub"])


def test_requests_cycle_round_robin() -> None:
    requests = [pb.ClassifyRequest(image=bytes([i])) for i in range(3)]
    cycle = RequestCycle(requests, unique=False)
    assert [next(cycle).image for _ in range(7)] == [
        b"\0",
        b"\1",
        b"\2",
        b"\0",
        b"\1",
        b"\2",
        b"\0",
    ]


def test_unique_encoded_images_differ_yet_decode_to_the_same_pixels() -> None:
    data = encode(Image.open(PHOTOS["coffee"]).convert("RGB"), "JPEG", quality=90)
    cycle = RequestCycle([pb.ClassifyRequest(image=data)], unique=True)
    sent = [next(cycle).image for _ in range(3)]
    assert len(set(sent)) == 3 and all(s.startswith(data) for s in sent)
    preprocessing = Preprocessing()
    expected = prepare_input(decode_image(data), preprocessing)
    for image in sent:
        assert np.array_equal(prepare_input(decode_image(image), preprocessing), expected)


def test_unique_raw_frames_differ_only_in_their_first_bytes() -> None:
    frame = raw_rgb8(PHOTOS["coffee"].read_bytes())
    cycle = RequestCycle([pb.ClassifyRequest(raw_image=frame)], unique=True)
    first, second = next(cycle).raw_image, next(cycle).raw_image
    assert first.data != second.data
    assert first.data[16:] == second.data[16:] == frame.data[16:]
    assert (first.width, first.height, len(first.data)) == (
        frame.width,
        frame.height,
        len(frame.data),
    )


def test_a_raw_frame_has_the_pixels_the_server_decodes_from_a_transparent_file() -> None:
    clear = encode(Image.new("RGBA", (8, 6), (255, 0, 0, 0)), "PNG")
    frame = raw_rgb8(clear)
    assert frame.data == to_rgb(decode_image(clear)).tobytes() == b"\xff" * 8 * 6 * 3
