"""Images the tests make from real photos: other formats, modes, orientations, broken ones."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **params)
    return buffer.getvalue()


def jpeg(image: Image.Image, **options: object) -> bytes:
    """The image as a quality-90 JPEG (RGB, unless it is grey or CMYK already)."""
    buffer = io.BytesIO()
    image.convert(image.mode if image.mode in ("RGB", "L", "CMYK") else "RGB").save(
        buffer, "JPEG", quality=90, **options
    )
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's shape."""
    png = encode(Image.new("L", (1, 1)), "PNG")
    ihdr_at = png.index(b"IHDR")
    header = struct.pack(">II", width, height) + png[ihdr_at + 12 : ihdr_at + 17]
    chunk = b"IHDR" + header
    return (
        png[: ihdr_at - 4]
        + struct.pack(">I", len(header))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + png[ihdr_at + 4 + len(header) + 4 :]
    )


def noise_png(side: int, seed: int = 0) -> bytes:
    """An incompressible PNG: side x side random RGB pixels, about 3 * side**2 bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG", compress_level=1)


def with_exif_rotation(image: Image.Image) -> bytes:
    """A JPEG stored rotated by 90 degrees whose EXIF orientation (6) turns it upright again."""
    stored = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def raw_frame(rgb: np.ndarray, pixel_format: str, pad: int = 0) -> tuple[bytes, int]:
    """Encode an (H, W, 3) RGB array as a raw frame; returns its bytes and row stride."""
    height, width, _ = rgb.shape
    if pixel_format in ("NV12", "I420"):
        return _yuv420(rgb, pixel_format, pad)
    channels = {
        "RGB8": rgb,
        "BGR8": rgb[..., ::-1],
        "RGBA8": np.dstack([rgb, np.full((height, width), 255, np.uint8)]),
        "BGRA8": np.dstack([rgb[..., ::-1], np.full((height, width), 7, np.uint8)]),
        "GRAY8": np.asarray(Image.fromarray(rgb).convert("L"))[..., None],
    }[pixel_format]
    rows = channels.reshape(height, -1)
    padded = np.pad(rows, ((0, 0), (0, pad)))
    return padded.tobytes(), padded.shape[1]


def _yuv420(rgb: np.ndarray, pixel_format: str, pad: int) -> tuple[bytes, int]:
    """BT.601 limited range 4:2:0, the way video decoders hand frames over."""
    height, width, _ = rgb.shape
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    chroma_h, chroma_w = (height + 1) // 2, (width + 1) // 2

    def half(plane: np.ndarray) -> np.ndarray:
        padded = np.pad(plane, ((0, chroma_h * 2 - height), (0, chroma_w * 2 - width)), "edge")
        return padded.reshape(chroma_h, 2, chroma_w, 2).mean(axis=(1, 3))

    def to_bytes(plane: np.ndarray) -> np.ndarray:
        return np.clip(np.round(plane), 0, 255).astype(np.uint8)

    stride = width + pad + (width % 2 if pixel_format == "NV12" else 0)
    luma = np.pad(to_bytes(y), ((0, 0), (0, stride - width)))
    if pixel_format == "NV12":
        interleaved = np.stack([to_bytes(half(u)), to_bytes(half(v))], axis=-1)
        chroma = np.pad(interleaved.reshape(chroma_h, -1), ((0, 0), (0, stride - 2 * chroma_w)))
        return luma.tobytes() + chroma.tobytes(), stride
    chroma_stride = (stride + 1) // 2
    planes = [np.pad(to_bytes(half(c)), ((0, 0), (0, chroma_stride - chroma_w))) for c in (u, v)]
    return luma.tobytes() + planes[0].tobytes() + planes[1].tobytes(), stride
