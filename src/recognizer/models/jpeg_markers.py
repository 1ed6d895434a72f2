"""What a JPEG's markers say about the work and memory decoding it takes, read before decoding.

Pillow reads a JPEG's header only up to its first scan, and libjpeg decodes every scan it
finds, whole image each, with nothing but a warning for a scan that brings coefficients
again: a small file can hold thousands of tiny scans that each walk every block of the
image again. And a JPEG of more than one scan (progressive, or its components sent
apart) is decoded into a buffer of every DCT coefficient of the image at full
resolution, 2 bytes each, whatever reduced scale its pixels come out at. `read_markers`
walks the whole file as libjpeg would, to count the scans, check their order and size
that buffer before any of it is decoded.

The standard (ITU-T T.81, G.1.1.1) brings each coefficient in one first scan, then
refines it one bit a scan: so in a JPEG whose scans keep that order, decoding visits each
coefficient at most 1 + 10 times (libjpeg's deepest successive approximation for 8-bit
samples), whatever its scans; only out of order can a scan repeat work without end.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

_SOS, _EOI = 0xDA, 0xD9
# Start-of-frame markers: C0-CF less DHT (C4), JPG (C8) and DAC (CC).
_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_COEFFICIENT_BYTES = 64 * 2  # a block of 8x8 JCOEFs (16-bit)
# Bytes between markers that belong to none: libjpeg skips them with a warning, and
# Pillow reads those before the first scan one at a time in Python (0.6 us each).
STRAY_BYTES = 64 << 10
# Markers without a length: TEM, restarts and SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
# A marker: 0xFF, fill bytes (more 0xFF), then its code; 0xFF00 is a stuffed zero byte.
_MARKER = re.compile(rb"\xff([^\x00\xff])")
# The marker that ends a scan's entropy-coded data, which holds stuffed zeros and restarts.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass(frozen=True, slots=True)
class Component:
    """A colour component of the frame, with its sampling factors."""

    horizontal: int
    vertical: int


@dataclass(frozen=True, slots=True)
class JpegMarkers:
    """What the markers say: the frame's size and components, and the scans."""

    width: int
    height: int
    components: tuple[Component, ...]
    progressive: bool
    scans: int
    markers: int  # metadata, tables, the frame, scans, restarts outside scans, EOI
    stray_bytes: int  # between markers, belonging to none
    first_scan_components: int
    out_of_order: bool = False  # a scan brings coefficients again (see the module's doc)

    @property
    def multi_scan(self) -> bool:
        """Whether libjpeg keeps every coefficient of the image while it decodes
        (its `has_multiple_scans`: progressive, or the first scan lacks a component)."""
        return self.progressive or self.first_scan_components < len(self.components)

    @property
    def coefficient_bytes(self) -> int:
        """The whole-image coefficient buffer libjpeg allocates for a multi-scan JPEG, at
        full resolution (DCT scaling only shrinks its output), else 0."""
        if not self.multi_scan or not self.components:
            return 0
        max_h = max(component.horizontal for component in self.components)
        max_v = max(component.vertical for component in self.components)
        blocks = 0
        for component in self.components:
            across = _divide_up(self.width * component.horizontal, max_h * 8)
            down = _divide_up(self.height * component.vertical, max_v * 8)
            # Each component's blocks are rounded up to whole MCUs (jdcoefct.c).
            blocks += (
                _divide_up(across, component.horizontal)
                * component.horizontal
                * (_divide_up(down, component.vertical) * component.vertical)
            )
        return blocks * _COEFFICIENT_BYTES


def read_markers(data: bytes, *, max_scans: int, max_markers: int) -> JpegMarkers:
    """Walk a JPEG's markers from SOI to EOI (or the end of the data): each segment skipped
    by its length and each scan's entropy-coded data to the marker that ends it, as
    libjpeg reads them (it skips stray bytes between markers too, with a warning).

    The walk stops once the scans pass `max_scans`, the markers `max_markers` or the stray
    bytes STRAY_BYTES, or at a scan out of order, so that its own work stays bounded: the
    counts then say only that a bound was passed. A file too broken to walk yields what
    was read before the break; decoding reports its errors.
    """
    width = height = scans = markers = stray = first_scan_components = 0
    components: tuple[Component, ...] = ()
    progressive = out_of_order = False
    brought: dict[int, list[int]] = {}  # by component id: each coefficient's last bit, or -1
    position = 2  # after SOI
    while scans <= max_scans and markers <= max_markers and stray <= STRAY_BYTES:
        window = position + STRAY_BYTES - stray + 2  # no further than the stray bytes allowed
        found = _MARKER.search(data, position, window)
        if found is None:
            if window < len(data):
                stray = STRAY_BYTES + 1
            break
        stray += found.start() - position
        marker = found[1][0]
        position = found.end()
        markers += 1
        if marker == _EOI:
            break
        if marker in _STANDALONE:
            continue
        if position + 2 > len(data):
            break
        (length,) = struct.unpack_from(">H", data, position)
        start, position = position + 2, position + length
        if marker in _FRAMES and position - start >= 6:
            height, width, count = struct.unpack_from(">HHB", data, start + 1)
            progressive = marker in _PROGRESSIVE
            specifications = data[start + 6 : min(position, start + 6 + 3 * count)]
            components = tuple(
                Component(max(1, sampling >> 4), max(1, sampling & 0x0F))
                for sampling in specifications[1::3]
            )
            brought = {component: [-1] * 64 for component in specifications[0::3]}
        elif marker == _SOS:
            scans += 1
            count = data[start] if position > start else 0
            if scans == 1:
                first_scan_components = count
            band = data[start + 1 + 2 * count : start + 4 + 2 * count]
            if len(band) == 3 and not _in_order(
                brought, data[start + 1 : start + 1 + 2 * count : 2], band, progressive
            ):
                out_of_order = True
                break
            entropy_coded = _NEXT_MARKER.search(data, position)
            if entropy_coded is None:
                break
            position = entropy_coded.start()
    return JpegMarkers(
        width,
        height,
        components,
        progressive,
        scans,
        markers,
        stray,
        first_scan_components,
        out_of_order,
    )


def _in_order(
    brought: dict[int, list[int]], components: bytes, band: bytes, progressive: bool
) -> bool:
    """Record what a scan brings of its components' coefficients (each one's successive
    approximation bit); False if it brings one again out of the standard's order: in a
    first scan after one already brought it, or in a refinement not one bit past the last.
    A sequential scan brings every coefficient, whole."""
    first, last, high, low = (band[0], band[1], band[2] >> 4, band[2] & 0x0F)
    if not progressive:
        first, last, high, low = 0, 63, 0, 0
    in_order = True
    for component in components:
        bits = brought.get(component)
        if bits is None:
            continue  # not a component of the frame: libjpeg refuses the scan
        for index in range(first, min(last, 63) + 1):
            if bits[index] != (high if high else -1) or (high and low != high - 1):
                in_order = False
            bits[index] = low
    return in_order


def _divide_up(value: int, divisor: int) -> int:
    return -(-value // divisor)
