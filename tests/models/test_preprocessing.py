"""Decoding and preparing images: every promised format and mode, every way to fail, and
the memory it takes."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
import torchvision.transforms as T
from PIL import Image

from images import encode, open_image, png_claiming_size, with_exif_rotation
from recognizer.errors import InvalidImageError
from recognizer.models.preprocessing import (
    DecodingStopped,
    Preprocessing,
    decode_cost,
    decode_image,
    flatten,
    prepare_input,
    reduce_on_decode,
)
from support import PHOTOS, load_script

PREPROCESSING = Preprocessing(resize=256, crop=224)


def prepared(data: bytes) -> np.ndarray:
    return prepare_input(decode_image(data), PREPROCESSING).astype(np.int16)


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    return open_image(PHOTOS["cat"].read_bytes()).convert("RGB")


@pytest.fixture(scope="module")
def hostile() -> ModuleType:
    return load_script("hostile_images")


def test_matches_torchvision_resize_and_centre_crop(cat: Image.Image) -> None:
    reference = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(224)])(cat)).astype(np.int16)
    ours = prepared(encode(cat, "PNG"))
    assert ours.shape == (224, 224, 3)
    assert np.abs(ours - reference).max() <= 1


@pytest.mark.parametrize(
    ("format", "params", "tolerance"),
    [
        ("PNG", {}, 1),
        ("BMP", {}, 1),
        ("TIFF", {}, 1),
        ("WEBP", {"lossless": True}, 1),
        ("JPEG", {"quality": 95}, 6),
        ("GIF", {}, 40),  # a 256-colour palette
    ],
)
def test_every_promised_format_decodes_to_the_same_picture(
    cat: Image.Image, format: str, params: dict[str, object], tolerance: float
) -> None:
    reference = prepared(encode(cat, "PNG"))
    assert np.abs(prepared(encode(cat, format, **params)) - reference).mean() <= tolerance


def test_an_animated_gif_uses_its_first_frame(cat: Image.Image) -> None:
    frames = [cat, Image.new("RGB", cat.size, (0, 0, 255))]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert np.abs(prepared(gif) - prepared(encode(cat, "GIF"))).mean() < 1


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "1"])
def test_other_colour_modes_become_rgb(cat: Image.Image, mode: str) -> None:
    converted = cat.convert(mode)
    format = "JPEG" if mode == "CMYK" else "PNG"
    pixels = prepared(encode(converted, format))
    expected = prepared(encode(converted.convert("RGB"), "PNG"))
    assert pixels.shape == (224, 224, 3)
    assert np.abs(pixels - expected).mean() < 3


def test_transparent_pixels_are_composited_on_white() -> None:
    clear = Image.new("RGBA", (300, 300), (255, 0, 0, 0))
    assert (prepared(encode(clear, "PNG")) == 255).all()


@pytest.mark.parametrize(("format", "dtype"), [("PNG", np.uint16), ("TIFF", np.int32)])
def test_16_and_32_bit_images_are_scaled_not_clipped(format: str, dtype: type) -> None:
    ramp = np.linspace(0, 65535, 300 * 300).astype(dtype).reshape(300, 300)
    image = Image.fromarray(ramp)
    assert image.mode == ("I;16" if dtype == np.uint16 else "I")
    data = encode(image, format)
    pixels = prepared(data)
    assert abs(pixels.mean() - 127.5) < 5  # clipping at 255 would give a mean near 255
    assert (pixels[..., 0] == pixels[..., 1]).all()
    expected = prepared(encode(Image.fromarray((ramp >> 8).astype(np.uint8)), "PNG"))
    assert np.abs(pixels - expected).max() <= 1  # resampled in 16 bits, then scaled


def test_float_images_are_clipped_to_8_bits() -> None:
    ramp = np.linspace(-100, 400, 300 * 300).astype(np.float32).reshape(300, 300)
    pixels = prepared(encode(Image.fromarray(ramp), "TIFF"))
    expected = prepared(encode(Image.fromarray(ramp.clip(0, 255).astype(np.uint8)), "PNG"))
    assert np.abs(pixels - expected).max() <= 1


def test_exif_orientation_is_applied(cat: Image.Image) -> None:
    upright = prepared(encode(cat, "JPEG", quality=95))
    assert np.abs(prepared(with_exif_rotation(cat)) - upright).mean() < 6


def test_large_jpegs_are_decoded_at_reduced_scale_to_nearly_the_same_pixels(
    cat: Image.Image,
) -> None:
    large = cat.resize((cat.width * 4, cat.height * 4), Image.Resampling.BICUBIC)
    full = T.Compose([T.Resize(256), T.CenterCrop(224)])(open_image(encode(large, "JPEG")))
    reduced = prepared(encode(large, "JPEG"))
    assert np.abs(reduced - np.asarray(full).astype(np.int16)).mean() < 3


@pytest.mark.parametrize("size", [(1, 1), (3, 1000), (4000, 2)])
def test_tiny_and_extreme_aspect_images_are_prepared_without_blowing_up(
    size: tuple[int, int],
) -> None:
    assert prepared(encode(Image.new("RGB", size, (9, 9, 9)), "PNG")).shape == (224, 224, 3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "IMAGE_EMPTY"),
        (b"hello, not an image", "IMAGE_UNDECODABLE"),
        (encode(Image.new("RGB", (16, 16)), "ICO"), "IMAGE_UNDECODABLE"),  # not a promised format
        (png_claiming_size(9_000, 9_000), "IMAGE_TOO_LARGE"),
        (png_claiming_size(20_000, 20_000), "IMAGE_TOO_LARGE"),  # over Pillow's own limit too
    ],
)
def test_unusable_bytes_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidImageError) as raised:
        prepared(data)
    assert raised.value.reason == reason
    assert raised.value.field == "image"


def test_truncated_images_are_refused_as_corrupt(cat: Image.Image) -> None:
    for format in ("JPEG", "PNG"):
        data = encode(cat, format)
        with pytest.raises(InvalidImageError) as raised:
            prepared(data[: len(data) // 2])
        assert raised.value.reason == "IMAGE_CORRUPT"


def test_the_pixel_limit_is_configurable() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(InvalidImageError, match="over the limit"):
        decode_image(data, max_pixels=9_999)
    assert decode_image(data, max_pixels=10_000).size == (100, 100)


@pytest.mark.parametrize("size", [(10_000, 10_000), (20_000, 10_000)])
def test_a_pixel_limit_above_pillows_own_is_not_overridden_by_it(size: tuple[int, int]) -> None:
    # Pillow warns above about 89 million pixels and refuses above 179 million.
    assert decode_image(png_claiming_size(*size), max_pixels=300_000_000).size == size


def test_pillows_own_guard_stays_on_for_what_it_allocates_while_opening() -> None:
    decode_image(png_claiming_size(10, 10), max_pixels=300_000_000)
    limit = Image.MAX_IMAGE_PIXELS
    assert limit == 300_000_000  # raised to ours, not switched off


def test_bgr_models_get_their_channels_reversed(cat: Image.Image) -> None:
    data = encode(cat, "PNG")
    rgb = prepare_input(decode_image(data), PREPROCESSING)
    bgr = prepare_input(decode_image(data), Preprocessing(channel_order="BGR"))
    assert (bgr == rgb[..., ::-1]).all()
    assert bgr.flags.c_contiguous and bgr.flags.writeable


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"crop": 300}, "at most resize"),
        ({"std": (0.2, 0.0, 0.2)}, "std values must be positive"),
        ({"mean": (0.5, 0.5)}, "three each"),
        ({"channel_order": "GBR"}, "channel_order must be RGB or BGR"),
    ],
)
def test_impossible_preprocessing_is_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Preprocessing(**settings)  # type: ignore[arg-type]


# Memory: what decoding holds, and what the budget is told beforehand


def over_white(image: Image.Image) -> np.ndarray:
    """The reference for transparency: full-size alpha compositing over opaque white."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")).astype(np.int16)


def test_rgb_and_grayscale_are_resampled_as_decoded_without_a_copy(cat: Image.Image) -> None:
    for mode in ("RGB", "L", "I;16", "I", "F"):
        image = cat.convert("L").convert(mode)
        assert flatten(image) is image


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_laid_over_white_in_one_working_copy(cat: Image.Image, mode: str) -> None:
    pixels = np.asarray(cat.convert("RGBA")).copy()
    pixels[..., 3] = np.linspace(0, 255, cat.width, dtype=np.uint8)  # from clear to opaque
    image = Image.fromarray(pixels).convert(mode)
    flat = flatten(image)
    assert flat.mode == "RGB"
    assert np.abs(np.asarray(flat).astype(np.int16) - over_white(image)).max() <= 1


@pytest.mark.parametrize("transparency", ["index", "alphas"])
def test_palette_transparency_is_laid_over_white_in_the_palette(
    cat: Image.Image, transparency: str
) -> None:
    image = cat.quantize(64)
    if transparency == "index":
        image.info["transparency"] = 5
    else:
        image.info["transparency"] = bytes(range(0, 256, 4))
    reference = over_white(image)
    flat = flatten(image)
    assert np.abs(np.asarray(flat).astype(np.int16) - reference).max() <= 1


def pillow(mode: str, format: str, **params: object) -> Callable[[int], bytes]:
    """A builder of a `format` image in `mode`, side x side, with some detail in it."""

    def build(side: int) -> bytes:
        picture = Image.linear_gradient("L").resize((side, side)).convert("RGB")
        picture.paste((200, 30, 90, 128), (side // 4, side // 4, side // 2, side // 2))
        return encode(picture.convert(mode), format, **params)

    return build


def rotated_progressive(side: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return pillow("RGB", "JPEG", progressive=True, exif=exif.tobytes())(side)


PEAK_CASES: dict[str, Callable[[int], bytes] | str] = {
    "JPEG, reduced on decoding": pillow("RGB", "JPEG"),
    "progressive JPEG": "progressive_jpeg",
    "progressive JPEG, 4:2:0 and turned by EXIF": rotated_progressive,
    "progressive CMYK JPEG": pillow("CMYK", "JPEG", progressive=True),
    "RGBA PNG": pillow("RGBA", "PNG"),
    "palette PNG with transparency": pillow("P", "PNG", transparency=3),
    "16-bit PNG": "png16",
    "WebP": "webp",
    "WebP with alpha": pillow("RGBA", "WEBP", lossless=True, method=0),
    "GIF": pillow("P", "GIF"),
    "BMP": pillow("RGB", "BMP"),
    "TIFF, deflated": pillow("RGB", "TIFF", compression="tiff_deflate"),
    "TIFF, one JPEG-compressed strip": pillow(
        "RGB", "TIFF", compression="jpeg", strip_size=1 << 30
    ),
    "CMYK TIFF": pillow("CMYK", "TIFF", compression="tiff_deflate"),
    "32-bit integer TIFF": "tiff32",
    "32-bit float TIFF, one strip": "tiff32_float_one_strip",
}
PEAK_SIDE = 1500
PEAK_SLACK = 1 << 20  # what the allocator and Python hold beside any image


@pytest.mark.parametrize("case", sorted(PEAK_CASES))
def test_the_budget_is_told_at_least_what_decoding_holds_at_its_peak(
    hostile: ModuleType, case: str
) -> None:
    builder = PEAK_CASES[case]
    if builder == "tiff32_float_one_strip":
        builder = lambda side: hostile.tiff32(side, floating=True, rows_per_strip=side)  # noqa: E731
    elif isinstance(builder, str):
        builder = getattr(hostile, builder)
    assert callable(builder)
    decoded = hostile.measure(builder(PEAK_SIDE), builder(64))
    assert not decoded.refused
    assert decoded.peak > PEAK_SIDE * PEAK_SIDE * 0.05  # it measured something
    assert decoded.peak <= decoded.cost + PEAK_SLACK


def test_a_large_transparent_png_holds_about_two_copies(hostile: ModuleType) -> None:
    side = 4000
    decoded = hostile.measure(pillow("RGBA", "PNG")(side), pillow("RGBA", "PNG")(64))
    assert decoded.peak <= 2.3 * side * side * 4  # the decoded pixels and one working copy


@pytest.mark.parametrize("builder", ["png16", "tiff32"])
def test_16_and_32_bit_images_hold_no_copy_beyond_their_pixels(
    hostile: ModuleType, builder: str
) -> None:
    side, build = 4000, getattr(hostile, builder)
    decoded = hostile.measure(build(side), build(64))
    assert decoded.peak <= 1.2 * side * side * (2 if builder == "png16" else 4)


def test_the_cost_follows_the_size_jpegs_decode_at_and_the_mode() -> None:
    large = Image.new("RGB", (4000, 3000), (20, 40, 60))
    jpeg = decode_image(encode(large, "JPEG"))
    reduce_on_decode(jpeg, 256)
    assert jpeg.size == (500, 375)  # an eighth, the shorter side still over 256
    resampled = 4 * 224 * 375  # the crop's rows, resampled to its width first
    assert decode_cost(jpeg, PREPROCESSING) == 500 * 375 * 4 + resampled  # RGB, upright
    gray = decode_image(encode(large.convert("L"), "TIFF"))
    assert decode_cost(gray, PREPROCESSING) == 4000 * 3000 + 4 * 224 * 3000  # as it is
    progressive = decode_image(encode(large, "JPEG", progressive=True))
    reduce_on_decode(progressive, 256)
    coefficients = (500 * 376 + 2 * 250 * 188) * 128  # 4:2:0 blocks, whole 16x16 MCUs
    assert decode_cost(progressive, PREPROCESSING) == decode_cost(jpeg, PREPROCESSING) + (
        coefficients
    )


# Work: decoding stops when nobody waits for it


def test_a_jpeg_stops_decoding_within_a_chunk_of_being_asked(hostile: ModuleType) -> None:
    data = hostile.progressive_jpeg(2000, depth=10, bands=63)  # 2,081 scans
    unbounded = {"max_jpeg_scans": 10**6, "max_jpeg_markers": 10**6}
    started = time.process_time()
    prepare_input(decode_image(data, **unbounded), PREPROCESSING)
    whole = time.process_time() - started
    reads = 0

    def stop() -> bool:
        nonlocal reads
        reads += 1
        return reads > 20  # a few chunks into decoding

    started = time.process_time()
    with pytest.raises(DecodingStopped):
        prepare_input(decode_image(data, stop=stop, **unbounded), PREPROCESSING)
    assert time.process_time() - started < whole / 3  # CPU time: unmoved by other load


@pytest.mark.parametrize(
    ("format", "stops"),
    [
        ("JPEG", True),
        ("PNG", True),
        ("GIF", True),
        ("BMP", True),
        ("TIFF", True),  # uncompressed, in chunks; libtiff decodes a compressed one whole
        ("WEBP", False),  # decoded whole, in one call, from what was read when opened
    ],
)
def test_formats_read_in_chunks_stop_between_them(
    cat: Image.Image, format: str, stops: bool
) -> None:
    asked = False
    image = decode_image(encode(cat, format), stop=lambda: asked)
    asked = True
    if stops:
        with pytest.raises(DecodingStopped):
            prepare_input(image, PREPROCESSING)
    else:
        assert prepare_input(image, PREPROCESSING).shape == (224, 224, 3)
