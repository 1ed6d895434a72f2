"""What a frame becomes on the wire: encoded image bytes, or its pixels as a RawImage.

Image files go out as they are; video frames are encoded as JPEG here. Raw frames
spare both sides the encode and decode: RGB8 for images, and for video the decoder's
own 4:2:0 planes (I420 for yuv420p, NV12) when it gives those, RGB8 otherwise, or
the format asked for. The server reads YUV as BT.601 limited range, so YUV tagged
otherwise (BT.709 HD video, full-range YUV from MJPEG cameras) is converted by
FFmpeg's swscale on the way, as is any other conversion.
"""

from __future__ import annotations

import io
import math

import numpy as np
from av.video.frame import VideoFrame
from av.video.plane import VideoPlane
from av.video.reformatter import ColorRange, Colorspace
from PIL import Image, ImageOps

from recognizer.client.sources import SourceFrame
from recognizer.errors import InvalidImageError
from recognizer.models.preprocessing import decode_image, to_rgb
from recognizer.v1 import recognizer_pb2 as pb

RAW_FORMATS = ("auto", "rgb8", "nv12", "i420")
JPEG_QUALITY = 90

_AV_FORMATS = {"rgb8": "rgb24", "nv12": "nv12", "i420": "yuv420p"}
_PIXEL_FORMATS = {
    "rgb8": pb.PIXEL_FORMAT_RGB8,
    "nv12": pb.PIXEL_FORMAT_NV12,
    "i420": pb.PIXEL_FORMAT_I420,
}
# FFmpeg's AVColorSpace values that mean BT.601 (or nothing said, which decoders read as
# BT.601), and AVColorRange's full range.
_BT601_COLORSPACES = frozenset({2, 5, 6})  # unspecified, BT470BG, SMPTE170M
_FULL_RANGE = 2


def to_request(
    frame: SourceFrame,
    *,
    raw_format: str | None = None,
    top_k: int = 0,
    language: str = "",
    model: str = "",
) -> pb.ClassifyRequest:
    """The request for one frame, numbered by its index; `raw_format` None sends it encoded."""
    request = pb.ClassifyRequest(
        request_id=str(frame.index), top_k=top_k, language=language, model=model
    )
    if raw_format is None:
        request.image = encoded(frame.picture)
        return request
    try:
        request.raw_image.CopyFrom(raw_image(frame.picture, raw_format))
    except InvalidImageError:
        # Not an image the client can read: send it as it is, so that the server reports
        # it in this frame's error exactly as it would without raw frames.
        assert isinstance(frame.picture, bytes)
        request.image = frame.picture
    return request


def encoded(picture: bytes | VideoFrame) -> bytes:
    """An image file's bytes as they are; a video frame as a JPEG."""
    if isinstance(picture, bytes):
        return picture
    buffer = io.BytesIO()
    Image.fromarray(picture.to_ndarray(format="rgb24")).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def raw_image(picture: bytes | VideoFrame, raw_format: str = "auto") -> pb.RawImage:
    """The picture's pixels, tightly packed, in `raw_format` (one of RAW_FORMATS).

    Raises InvalidImageError for image bytes that cannot be decoded.
    """
    if raw_format not in RAW_FORMATS:
        raise ValueError(f"raw format must be one of {', '.join(RAW_FORMATS)}")
    frame = picture if isinstance(picture, VideoFrame) else _decoded(picture)
    target = _target(frame) if raw_format == "auto" else raw_format
    if target == "rgb8":
        frame = frame.reformat(format="rgb24")
    elif frame.format.name != _AV_FORMATS[target] or not _bt601_limited(frame):
        frame = frame.reformat(
            format=_AV_FORMATS[target],
            dst_colorspace=Colorspace.ITU601,
            dst_color_range=ColorRange.MPEG,
        )
    width, chroma_width = frame.width, math.ceil(frame.width / 2)
    rows = {
        "rgb8": (3 * width,),
        "nv12": (2 * chroma_width, 2 * chroma_width),  # luma padded to the UV rows' length
        "i420": (width, chroma_width, chroma_width),
    }[target]
    data = b"".join(
        _packed(plane, row_bytes) for plane, row_bytes in zip(frame.planes, rows, strict=True)
    )
    return pb.RawImage(
        width=width,
        height=frame.height,
        format=_PIXEL_FORMATS[target],
        row_stride=rows[0],
        data=data,
    )


def _decoded(image: bytes) -> VideoFrame:
    """An image file's pixels, upright, read with the server's checks and its conversion
    to RGB8 (alpha over white, 16-bit scaled down), so raw frames match the encoded image."""
    opened = decode_image(image)
    try:
        rgb = np.asarray(to_rgb(ImageOps.exif_transpose(opened)))
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidImageError(
            "image data is truncated or corrupt", reason="IMAGE_CORRUPT"
        ) from error
    return VideoFrame.from_ndarray(rgb, format="rgb24")


def _target(frame: VideoFrame) -> str:
    """auto: the decoder's 4:2:0 layout when it has one, else RGB8."""
    for target in ("i420", "nv12"):
        if frame.format.name == _AV_FORMATS[target]:
            return target
    return "rgb8"


def _bt601_limited(frame: VideoFrame) -> bool:
    return frame.colorspace in _BT601_COLORSPACES and frame.color_range != _FULL_RANGE


def _packed(plane: VideoPlane, row_bytes: int) -> bytes:
    """A plane's rows without the decoder's alignment padding, each `row_bytes` long."""
    rows = np.frombuffer(memoryview(plane), np.uint8)[: plane.line_size * plane.height]
    rows = rows.reshape(plane.height, plane.line_size)[:, :row_bytes]
    if rows.shape[1] < row_bytes:  # an odd-width NV12 luma row with no padding to borrow
        rows = np.pad(rows, ((0, 0), (0, row_bytes - rows.shape[1])))
    return rows.tobytes()
