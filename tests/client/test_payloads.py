"""Frames on the wire: JPEG for video, files as they are, raw pixels the server reads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from av.video.frame import VideoFrame
from av.video.reformatter import ColorRange, Colorspace
from PIL import Image

from fakes import solid_png
from images import encode, open_image, with_exif_rotation
from recognizer.client.payloads import encoded, raw_image, to_request
from recognizer.client.sources import SourceFrame, open_source
from recognizer.models.preprocessing import decode_image, to_rgb
from recognizer.models.raw import PixelFormat, RawFrame, frame_to_image
from recognizer.v1 import recognizer_pb2 as pb
from videos import solid_video

ORANGE = (230, 120, 20)


def served(raw: pb.RawImage) -> np.ndarray:
    """The RGB pixels the server makes of a raw image (it validates the size first)."""
    name = pb.PixelFormat.Name(raw.format).removeprefix("PIXEL_FORMAT_")
    frame = RawFrame(raw.width, raw.height, PixelFormat[name], raw.data, raw.row_stride)
    return np.asarray(frame_to_image(frame).convert("RGB")).astype(int)


def gradient(width: int, height: int) -> np.ndarray:
    """A smooth picture, so that 4:2:0 chroma subsampling loses little."""
    rows, columns = np.mgrid[0:height, 0:width]
    return np.dstack(
        [columns * 255 // width, rows * 255 // height, np.full((height, width), 90)]
    ).astype(np.uint8)


@pytest.fixture
def clip_frame(tmp_path: Path) -> VideoFrame:
    """One frame as a video decoder gives it: yuv420p with padded rows."""
    with open_source(solid_video(tmp_path / "clip.mp4", [ORANGE], fps=10)) as source:
        picture = next(source.frames).picture
    assert isinstance(picture, VideoFrame)
    return picture


def test_image_files_go_as_they_are_and_video_frames_as_jpeg(clip_frame: VideoFrame) -> None:
    png = solid_png(ORANGE)
    assert encoded(png) is png
    jpeg = open_image(encoded(clip_frame))
    assert jpeg.format == "JPEG" and jpeg.size == (64, 48)
    assert np.abs(np.asarray(jpeg).astype(int) - ORANGE).max() <= 8


def test_auto_sends_the_decoders_own_i420_planes(clip_frame: VideoFrame) -> None:
    raw = raw_image(clip_frame)
    assert raw.format == pb.PIXEL_FORMAT_I420
    assert (raw.width, raw.height, raw.row_stride) == (64, 48, 64)  # the padding is dropped
    assert len(raw.data) == 64 * 48 * 3 // 2
    assert np.abs(served(raw) - ORANGE).max() <= 6


@pytest.mark.parametrize(
    ("raw_format", "pixel_format"),
    [
        ("rgb8", pb.PIXEL_FORMAT_RGB8),
        ("nv12", pb.PIXEL_FORMAT_NV12),
        ("i420", pb.PIXEL_FORMAT_I420),
    ],
)
@pytest.mark.parametrize("size", [(64, 48), (45, 33)])  # odd sizes round chroma up
def test_every_raw_format_gives_the_server_the_picture(
    raw_format: str, pixel_format: int, size: tuple[int, int]
) -> None:
    rgb = gradient(*size)
    raw = raw_image(encode(Image.fromarray(rgb), "PNG"), raw_format)
    assert (raw.format, raw.width, raw.height) == (pixel_format, *size)
    error = np.abs(served(raw) - rgb)
    if raw_format == "rgb8":
        assert error.max() == 0  # an image file's pixels exactly
    else:
        assert error.mean() < 3


def test_yuv_tagged_full_range_or_bt709_is_converted_to_what_the_server_reads() -> None:
    rgb = np.full((32, 48, 3), ORANGE, dtype=np.uint8)
    frame = VideoFrame.from_ndarray(rgb, format="rgb24")
    for colorspace, color_range in [
        (Colorspace.ITU601, ColorRange.JPEG),
        (Colorspace.ITU709, ColorRange.MPEG),
    ]:
        tagged = frame.reformat(
            format="yuv420p", dst_colorspace=colorspace, dst_color_range=color_range
        )
        assert np.abs(served(raw_image(tagged, "i420")) - ORANGE).max() <= 4


def test_raw_images_are_upright_like_encoded_ones() -> None:
    rgb = gradient(40, 30)
    raw = raw_image(with_exif_rotation(Image.fromarray(rgb)), "rgb8")
    assert (raw.width, raw.height) == (40, 30)


def test_a_request_carries_the_frame_index_and_the_options(clip_frame: VideoFrame) -> None:
    frame = SourceFrame(7, "0.280s", 0.28, clip_frame)
    request = to_request(frame, raw_format="nv12", top_k=2, language="en", model="colours")
    assert (request.request_id, request.top_k, request.language, request.model) == (
        "7",
        2,
        "en",
        "colours",
    )
    assert request.raw_image.format == pb.PIXEL_FORMAT_NV12
    assert to_request(frame).WhichOneof("source") == "image"


def test_a_file_the_client_cannot_decode_goes_as_it_is_for_the_server_to_judge() -> None:
    broken = solid_png(ORANGE)[:60]
    for junk in (b"not an image", broken):
        request = to_request(SourceFrame(0, "junk.png", None, junk), raw_format="auto")
        assert request.image == junk


def test_raw_rgb8_has_the_pixels_the_server_decodes_from_16_bit_and_transparent_files() -> None:
    ramp = np.linspace(0, 65535, 40 * 30).astype(np.uint16).reshape(30, 40)
    rgba = np.dstack([gradient(40, 30), np.tile(np.arange(0, 240, 6, dtype=np.uint8), (30, 1))])
    for image in (Image.fromarray(ramp), Image.fromarray(rgba, "RGBA")):
        data = encode(image, "PNG")
        raw = raw_image(data, "rgb8")
        expected = np.asarray(to_rgb(decode_image(data)))
        sent = np.frombuffer(raw.data, np.uint8).reshape(raw.height, raw.width, 3)
        assert np.array_equal(sent, expected), image.mode
