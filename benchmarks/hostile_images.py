"""Images built to cost a decoder far more than their size tells, and what each costs.

    python benchmarks/hostile_images.py [--side 8000]

The builders make, at full size by default (64 megapixels, the default
--max-image-pixels; nothing is downloaded):

- `many_scan_jpeg`: a progressive JPEG whose one tiny AC scan repeats thousands of times.
  libjpeg decodes every scan over the whole image and only warns about the repeats, so a
  file of a few hundred KiB takes many seconds; the server refuses it from its markers
  (its scans are out of the standard's order).
- `progressive_jpeg`: a flat 4:4:4 progressive JPEG whose scans keep the standard's order
  but ask the most work of it: by default every AC coefficient refined bit by bit as deep
  as libjpeg allows (35 scans, within the server's bound of 100); with `bands` many
  bands, thousands of scans (refused by that bound). Small, but libjpeg holds all its DCT
  coefficients at full resolution, 6 bytes a pixel, whatever reduced scale it decodes at.
- `webp`: libwebp decodes into a canvas, keeps the one before, and Pillow copies the frame
  out: four RGBA images in all.
- `png16`: 16-bit grayscale, built row by row (no image in memory).
- `tiff32`: 32-bit integer or float grayscale, deflated strips all pointing at one.

`measure` decodes an image as the server does (decode_image, decode_cost, prepare_input)
in a fresh process, after a warm-up image, and reports its peak resident growth (VmHWM;
ru_maxrss would count the parent's peak, inherited across exec), the cost the decoding
budget is told, and the CPU time. Run as a script, it prints that for each builder;
tests/models/test_preprocessing.py checks the same, smaller. The fault suite can import
the builders (`support.load_script("hostile_images")` in tests).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

SIDE = 8000  # 64 megapixels, the default --max-image-pixels
MANY_SCANS = 3000
GREY = (100, 120, 140)
# A marker with a length (not a stuffed zero, a fill byte or a restart), and the marker
# that ends a scan's entropy-coded data.
_SEGMENT = re.compile(rb"\xff([\x01-\xcf\xda-\xfe])")
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def many_scan_jpeg(side: int = SIDE, scans: int = MANY_SCANS) -> bytes:
    """A flat progressive JPEG of `scans` scans: its first single-component AC scan (a few
    end-of-band runs over every block) and the Huffman table before it, repeated."""
    jpeg = _flat_progressive(side, subsampling=2)
    found = jpeg_scans(jpeg)
    scan = next(scan for scan in found if len(scan.components) == 1 and scan.band[0] > 0)
    repeats = max(0, scans - len(found))
    return jpeg[: scan.end] + jpeg[scan.start : scan.end] * repeats + jpeg[scan.end :]


def progressive_jpeg(side: int = SIDE, *, depth: int = 10, bands: int = 1) -> bytes:
    """A flat 4:4:4 progressive JPEG whose scans keep the standard's order but ask the most
    of it: each component's AC coefficients in `bands` bands, each brought `depth` bits
    short and refined a bit a scan (10 is libjpeg's deepest), so 2 + 3 x bands x (depth +
    1) scans in all; and the largest coefficient buffer, 6 bytes a pixel."""
    jpeg = _flat_progressive(side, subsampling=0)
    found = jpeg_scans(jpeg)
    dc_first, dc_refinement = (scan for scan in found if scan.band[0] == 0)
    parts = [jpeg[: dc_first.end]]
    edges = [1 + 63 * band // bands for band in range(bands + 1)]
    for component in dict.fromkeys(scan.components[0] for scan in found if scan.band[0]):
        own = [scan for scan in found if scan.components == (component,)]
        first = next(scan for scan in own if scan.band[2] >> 4 == 0)
        refinement = next(scan for scan in own if scan.band[2] >> 4)
        for low, high in itertools.pairwise(edges):
            # A flat image's AC scans are end-of-band runs, whatever their band and bits.
            parts.append(first.with_band(jpeg, low, high - 1, 0, depth))
            for bit in range(depth, 0, -1):
                parts.append(refinement.with_band(jpeg, low, high - 1, bit, bit - 1))
    return b"".join([*parts, jpeg[dc_refinement.start : dc_refinement.end], b"\xff\xd9"])


def webp(side: int = SIDE, *, alpha: bool = False) -> bytes:
    """A flat lossless WebP (RGBA when `alpha`, with half its pixels see-through)."""
    image = Image.new("RGBA" if alpha else "RGB", (side, side), GREY)
    if alpha:
        image.paste((0, 0, 0, 0), (0, 0, side // 2, side))
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", lossless=True, method=0)
    return buffer.getvalue()


def png16(side: int = SIDE) -> bytes:
    """A 16-bit grayscale PNG, a ramp along each row."""
    row = b"\0" + b"".join(struct.pack(">H", 65535 * x // side) for x in range(side))
    compressor = zlib.compressobj(6)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def tiff32(side: int = SIDE, *, floating: bool = False, rows_per_strip: int = 16) -> bytes:
    """A 32-bit grayscale TIFF (signed integers, or floats), deflated in strips of
    `rows_per_strip` rows that all point at the same compressed zeros."""
    strips = -(-side // rows_per_strip)
    strip = zlib.compress(bytes(side * 4 * rows_per_strip), 9)
    entries = [  # (tag, type, count, value): type 3 SHORT, 4 LONG
        (256, 4, 1, side),  # ImageWidth
        (257, 4, 1, side),  # ImageLength
        (258, 3, 1, 32),  # BitsPerSample
        (259, 3, 1, 8),  # Compression: deflate
        (262, 3, 1, 1),  # PhotometricInterpretation: black is zero
        (273, 4, strips, 0),  # StripOffsets: all at the one strip
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, rows_per_strip),  # RowsPerStrip
        (279, 4, strips, 0),  # StripByteCounts
        (339, 3, 1, 3 if floating else 2),  # SampleFormat: float or signed integer
    ]
    directory_at = 8
    # Arrays of more than one value go after the directory, then the one strip's data.
    arrays_at = directory_at + 2 + 12 * len(entries) + 4
    strip_at = arrays_at + (8 * strips if strips > 1 else 0)
    values = {273: strip_at, 279: len(strip)}
    directory = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag in values and count > 1:
            array_at = arrays_at + (4 * count if tag == 279 else 0)
            directory += struct.pack("<HHII", tag, kind, count, array_at)
        else:
            packed = struct.pack("<H2x" if kind == 3 else "<I", values.get(tag, value))
            directory += struct.pack("<HHI", tag, kind, count) + packed
    arrays = b"".join(struct.pack(f"<{strips}I", *[values[tag]] * strips) for tag in (273, 279))
    return (
        b"II*\0"
        + struct.pack("<I", directory_at)
        + directory
        + b"\0" * 4
        + (arrays if strips > 1 else b"")
        + strip
    )


BUILDERS: dict[str, Callable[[int], bytes]] = {
    "progressive JPEG, one scan repeated": many_scan_jpeg,
    "progressive JPEG, 2,081 scans in order": lambda side: progressive_jpeg(side, bands=63),
    "progressive JPEG, 68 scans in order": lambda side: progressive_jpeg(side, bands=2),
    "WebP": webp,
    "WebP with alpha": lambda side: webp(side, alpha=True),
    "16-bit PNG": png16,
    "32-bit integer TIFF": tiff32,
    "32-bit float TIFF": lambda side: tiff32(side, floating=True),
}


def _flat_progressive(side: int, subsampling: int) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (side, side), GREY)
    image.save(buffer, "JPEG", progressive=True, optimize=True, subsampling=subsampling)
    return buffer.getvalue()


@dataclass(frozen=True)
class Scan:
    """A scan of a JPEG: its bytes (from the table before it) and its header's fields."""

    start: int  # the Huffman table before the scan, if one is, else the scan's marker
    header: int  # the scan's marker
    end: int
    components: tuple[int, ...]
    band: tuple[int, int, int]  # first and last coefficient, high and low bits (one byte)

    def with_band(self, jpeg: bytes, first: int, last: int, high: int, low: int) -> bytes:
        """The scan's bytes with another band and other bits in its header."""
        piece = bytearray(jpeg[self.start : self.end])
        at = self.header - self.start + 5 + 2 * len(self.components)
        piece[at : at + 3] = bytes([first, last, high << 4 | low])
        return bytes(piece)


def jpeg_scans(jpeg: bytes) -> list[Scan]:
    """A JPEG's scans, in order (for a JPEG whose segments and scans are all well formed)."""
    found = []
    position = previous = 2
    while segment := _SEGMENT.search(jpeg, position):
        start = segment.start()
        position = start + 2 + struct.unpack_from(">H", jpeg, start + 2)[0]
        if segment[1] != b"\xda":
            previous = start
            continue
        count = jpeg[start + 4]
        components = tuple(jpeg[start + 5 : start + 5 + 2 * count : 2])
        first, last, bits = jpeg[start + 5 + 2 * count : position]
        scan_end = _SCAN_END.search(jpeg, position)
        assert scan_end is not None
        band = (first, last, bits)
        found.append(Scan(previous, start, scan_end.start(), components, band))
        position = previous = scan_end.start()
    return found


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@dataclass(frozen=True)
class Decoded:
    """What decoding one image as the server does cost, in a fresh process; `refused` is
    the reason it was refused instead, and `pillow_cpu_s` what Pillow alone then takes to
    decode it, as the server did before it looked (at the scale the server would)."""

    peak: int  # bytes of resident memory above the level before, at the highest
    cost: int  # bytes the decoding budget is told
    cpu_s: float
    refused: str = ""
    pillow_cpu_s: float = 0.0


_MEASURE = """
import io, json, sys, time
from PIL import Image
from recognizer.errors import InvalidImageError
from recognizer.models.preprocessing import (
    Preprocessing, decode_cost, decode_image, prepare_input, reduce_on_decode)

def high_water():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

def prepared(data, **limits):
    image = decode_image(data, max_pixels=10**9, **limits)
    reduce_on_decode(image, PREPROCESSING.resize)
    cost = decode_cost(image, PREPROCESSING)
    prepare_input(image, PREPROCESSING)
    return cost

PREPROCESSING = Preprocessing()
limits = json.loads(sys.argv[3])
with open(sys.argv[2], "rb") as warm_up:
    prepared(warm_up.read(), max_jpeg_scans=10**9, max_jpeg_markers=10**9)
with open(sys.argv[1], "rb") as image:
    data = image.read()
before, started = high_water(), time.process_time()
try:
    cost, refused = prepared(data, **limits), ""
except InvalidImageError as error:
    cost, refused = 0, error.reason
cpu_s = time.process_time() - started
peak, pillow_cpu_s = high_water() - before, 0.0
if refused:
    started = time.process_time()
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (PREPROCESSING.resize, PREPROCESSING.resize))
    image.load()
    pillow_cpu_s = time.process_time() - started
print(json.dumps(
    {"peak": peak, "cost": cost, "cpu_s": cpu_s, "refused": refused, "pillow_cpu_s": pillow_cpu_s}
))
"""


def measure(data: bytes, warm_up: bytes, **limits: int) -> Decoded:
    """Decode `data` as the server does in a fresh process, once `warm_up` (a small image
    of the same kind) has loaded the decoder's code; `limits` go to decode_image."""
    with tempfile.TemporaryDirectory() as folder:
        image, warm = Path(folder, "image"), Path(folder, "warm-up")
        image.write_bytes(data)
        warm.write_bytes(warm_up)
        result = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(image), str(warm), json.dumps(limits)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    if result.returncode:
        raise RuntimeError(f"measuring failed: {result.stderr}")
    return Decoded(**json.loads(result.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=SIDE, help="pixels a side (default 8000)")
    args = parser.parse_args()
    mib = 1 << 20
    print(f"{'image':36} {'file':>11} {'peak':>9} {'cost':>9} {'CPU':>7}")
    for name, build in BUILDERS.items():
        data, warm_up = build(args.side), build(64)
        decoded = measure(data, warm_up)
        held = (
            f"{decoded.refused:>19}"
            if decoded.refused
            else (f"{decoded.peak / mib:5.0f} MiB {decoded.cost / mib:5.0f} MiB")
        )
        print(f"{name:36} {len(data) / 1024:7.1f} KiB {held} {decoded.cpu_s:6.2f}s")
        if decoded.refused:
            print(f"{'  ... decoded by Pillow alone':36} {'':31} {decoded.pillow_cpu_s:6.2f}s")


if __name__ == "__main__":
    main()
