"""A JPEG's markers walked before decoding: its scans and their order, its markers, the
coefficient buffer libjpeg will hold, and the walk's own bounds."""

from __future__ import annotations

import struct
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from images import encode, open_image
from recognizer.errors import InvalidImageError
from recognizer.models.jpeg_markers import STRAY_BYTES, Component, JpegMarkers, read_markers
from recognizer.models.preprocessing import check_jpeg, decode_image
from support import PHOTOS, load_script

UNBOUNDED = {"max_scans": 10**9, "max_markers": 10**9}


@pytest.fixture(scope="module")
def hostile() -> ModuleType:
    return load_script("hostile_images")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(PHOTOS["cat"]).convert("RGB")


def walk(data: bytes) -> JpegMarkers:
    return read_markers(data, **UNBOUNDED)


def test_a_baseline_jpeg_has_one_scan_and_no_coefficient_buffer(photo: Image.Image) -> None:
    markers = walk(encode(photo, "JPEG"))
    assert (markers.width, markers.height) == photo.size
    assert (markers.scans, markers.progressive, markers.multi_scan) == (1, False, False)
    assert markers.coefficient_bytes == 0


@pytest.mark.parametrize(
    ("mode", "subsampling", "components"),
    [("RGB", 2, [(2, 2), (1, 1), (1, 1)]), ("RGB", 0, [(1, 1)] * 3), ("L", 0, [(1, 1)])],
)
def test_a_progressive_jpeg_holds_every_coefficient_at_full_resolution(
    mode: str, subsampling: int, components: list[tuple[int, int]]
) -> None:
    size = (1001, 777)  # not whole blocks, nor whole 16x16 MCUs
    image = Image.new(mode, size, 128)
    data = encode(image, "JPEG", progressive=True, subsampling=subsampling)
    markers = walk(data)
    assert markers.components == tuple(Component(h, v) for h, v in components)
    assert markers.progressive and markers.scans == (10 if mode == "RGB" else 6)
    # libjpeg's blocks: per component, rounded up to whole MCUs; 64 coefficients of 2 bytes.
    max_h, max_v = max(h for h, _ in components), max(v for _, v in components)
    mcus_across, mcus_down = -(-size[0] // (8 * max_h)), -(-size[1] // (8 * max_v))
    blocks = sum(mcus_across * h * mcus_down * v for h, v in components)
    assert markers.coefficient_bytes == blocks * 128


def test_components_sent_in_separate_scans_need_the_buffer_too() -> None:
    one_at_a_time = JpegMarkers(64, 64, (Component(1, 1),) * 3, False, 3, 6, 0, 1)
    assert one_at_a_time.multi_scan
    assert one_at_a_time.coefficient_bytes == 3 * 64 * 128


def test_every_scan_is_counted(hostile: ModuleType) -> None:
    data = hostile.progressive_jpeg(256, depth=2, bands=20)  # in the standard's order
    markers = walk(data)
    assert (markers.scans, markers.out_of_order) == (2 + 3 * 20 * 3, False)
    assert open_image(data).size == (256, 256)  # and Pillow decodes it whole


def test_a_scan_that_brings_coefficients_again_is_out_of_order(hostile: ModuleType) -> None:
    repeated = hostile.many_scan_jpeg(256, scans=500)
    assert open_image(repeated).size == (256, 256)  # libjpeg only warns
    markers = walk(repeated)
    assert markers.out_of_order and markers.scans == 3  # the walk stops at the first repeat
    with pytest.raises(InvalidImageError) as raised:
        decode_image(repeated, max_jpeg_scans=10**6, max_jpeg_markers=10**6)
    assert raised.value.reason == "IMAGE_CORRUPT"


@pytest.mark.parametrize(
    ("first", "last", "high", "low"),
    [(1, 5, 0, 0), (6, 6, 0, 0), (1, 63, 2, 1), (1, 63, 1, 1), (1, 63, 0, 3)],
)
def test_a_refinement_must_take_each_coefficient_one_bit_further(
    hostile: ModuleType, first: int, last: int, high: int, low: int
) -> None:
    """After a first scan of 1-63 at 2 bits short and a refinement to 1, only a refinement
    from 1 to 0 may come: none that brings them again, skips a bit or starts over."""
    data = hostile.progressive_jpeg(64, depth=2)
    scans = hostile.jpeg_scans(data)
    scan, last_bit = scans[2:4]  # the first component's refinements from 2 bits to 1 to 0
    assert (scan.band, last_bit.band) == ((1, 63, 2 << 4 | 1), (1, 63, 1 << 4 | 0))
    extra = scan.with_band(data, first, last, high, low)
    assert walk(data[: scan.end] + extra + data[scan.end :]).out_of_order
    instead = scan.with_band(data, 1, 63, 1, 0)  # the same refinement as the next, alone
    assert not walk(data[: scan.end] + instead + data[last_bit.end :]).out_of_order


def test_a_jpeg_inside_a_segment_is_skipped_with_it(photo: Image.Image) -> None:
    data = encode(photo, "JPEG")
    inner = encode(photo.resize((32, 24)), "JPEG", progressive=True)  # as an EXIF thumbnail
    app2 = b"\xff\xe2" + struct.pack(">H", len(inner) + 2) + inner
    markers = walk(data[:2] + app2 + data[2:])
    assert (markers.scans, markers.width) == (1, photo.width)


def test_restart_markers_and_stuffed_bytes_belong_to_their_scan(photo: Image.Image) -> None:
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 256, (480, 640, 3), np.uint8))
    data = encode(noisy, "JPEG", quality=95, restart_marker_blocks=1)
    assert data.count(b"\xff\x00") > 100 and data.count(b"\xff\xd0") > 100
    markers = walk(data)
    assert markers.scans == 1 and markers.markers < 20 and markers.stray_bytes == 0


def test_fill_bytes_and_a_little_junk_between_markers_are_skipped(photo: Image.Image) -> None:
    data = encode(photo, "JPEG")
    after_app0 = 4 + struct.unpack_from(">H", data, 4)[0]
    padded = data[:after_app0] + b"junk" + b"\xff" * 7 + data[after_app0:]
    markers = walk(padded)
    assert (markers.scans, markers.stray_bytes) == (1, 7 + 4)
    assert decode_image(padded).size == photo.size


def test_a_truncated_jpeg_yields_what_was_read(photo: Image.Image) -> None:
    data = encode(photo, "JPEG", progressive=True)
    markers = walk(data[: len(data) // 2])
    assert 1 <= markers.scans < 10 and markers.width == photo.width


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        ({"max_scans": 97, "max_markers": 4096}, "IMAGE_TOO_COMPLEX"),
        ({"max_scans": 98, "max_markers": 150}, "IMAGE_TOO_COMPLEX"),
    ],
)
def test_past_either_bound_the_jpeg_is_refused_before_pillow_reads_it(
    hostile: ModuleType, limits: dict[str, int], reason: str
) -> None:
    data = hostile.progressive_jpeg(256, depth=0, bands=32)  # a table before each scan
    assert walk(data).scans == 2 + 3 * 32 == 98
    check_jpeg(data, max_scans=98, max_markers=4096)
    with pytest.raises(InvalidImageError) as raised:
        check_jpeg(data, **limits)
    assert raised.value.reason == reason
    with pytest.raises(InvalidImageError, match="more than 97 scans"):
        decode_image(data, max_jpeg_scans=97)


def test_the_walk_stops_at_its_bounds_so_its_own_work_is_bounded() -> None:
    segments = b"\xff\xd8" + b"\xff\xfe\x00\x02" * 1_000_000  # a million empty comments
    assert read_markers(segments, max_scans=100, max_markers=4096).markers == 4097
    fill = b"\xff\xd8" + b"\xff" * (8 << 20)  # fill bytes that never reach a marker
    assert read_markers(fill, max_scans=100, max_markers=4096).stray_bytes == STRAY_BYTES + 1


def test_more_stray_bytes_than_any_real_jpeg_has_are_refused_as_corrupt(
    photo: Image.Image,
) -> None:
    data = encode(photo, "JPEG")
    junk = data[:2] + b"\xff" * (STRAY_BYTES + 1) + data[2:]  # fill bytes, to Pillow
    with pytest.raises(InvalidImageError) as raised:
        decode_image(junk)
    assert raised.value.reason == "IMAGE_CORRUPT"
