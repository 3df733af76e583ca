"""A loss curve as a PNG, drawn with nothing but ``zlib``.

``tinkex train`` writes one picture per run; a plotting library would be a heavy dependency
for that, so this module rasterizes a line chart itself: a white canvas, a light grid, the
axes, the curve, and the axis ranges in a tiny built-in bitmap font (digits and the few
letters the labels need), then encodes it as an 8-bit RGB PNG (one ``IDAT`` chunk, no
filtering: small enough for a few hundred by a few hundred pixels).
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Canvas", "encode_png", "write_line_chart"]

Color = tuple[int, int, int]

_WHITE: Color = (255, 255, 255)
_GRID: Color = (225, 228, 232)
_AXIS: Color = (90, 90, 90)
_LINE: Color = (31, 119, 180)
_TEXT: Color = (40, 40, 40)

# 3x5 glyphs, one string of 15 "#"/"." cells per character, row by row.
_GLYPHS: dict[str, str] = {
    "0": "####.##.##.####",
    "1": ".#.##..#..#.###",
    "2": "###..#####..###",
    "3": "###..#.##..####",
    "4": "#.##.####..#..#",
    "5": "####..###..####",
    "6": "####..####.####",
    "7": "###..#..#.#..#.",
    "8": "####.#####.####",
    "9": "####.####..####",
    ".": ".............#.",
    "-": "......###......",
    "e": "...####.###.###",
    "l": "##..#..#..#.###",
    "o": "...####.##.####",
    "s": "....####...###.",
    "t": ".#.###.#..#..##",
    "p": "...####.#####..",
    " ": "...............",
}
_SCALE = 2
_GLYPH_W, _GLYPH_H = 3 * _SCALE, 5 * _SCALE


class Canvas:
    """An RGB raster, ``width`` x ``height``, origin at the top left."""

    def __init__(self, width: int, height: int, background: Color = _WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            offset = 3 * (y * self.width + x)
            self.pixels[offset : offset + 3] = bytes(color)

    def get(self, x: int, y: int) -> Color:
        offset = 3 * (y * self.width + x)
        r, g, b = self.pixels[offset : offset + 3]
        return (r, g, b)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, thickness: int = 1) -> None:
        """A straight line (Bresenham), ``thickness`` pixels wide."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        reach = range(-(thickness // 2), thickness - thickness // 2)
        while True:
            for ox in reach:
                for oy in reach:
                    self.set(x0 + ox, y0 + oy, color)
            if x0 == x1 and y0 == y1:
                return
            doubled = 2 * error
            if doubled >= dy:
                error += dy
                x0 += sx
            if doubled <= dx:
                error += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, color: Color = _TEXT) -> None:
        """``text`` with its top left corner at ``(x, y)``; unknown characters are blank."""
        for index, char in enumerate(text):
            glyph = _GLYPHS.get(char, _GLYPHS[" "])
            left = x + index * (_GLYPH_W + _SCALE)
            for cell, mark in enumerate(glyph):
                if mark == "#":
                    row, col = divmod(cell, 3)
                    for oy in range(_SCALE):
                        for ox in range(_SCALE):
                            self.set(left + col * _SCALE + ox, y + row * _SCALE + oy, color)


def _text_width(text: str) -> int:
    return len(text) * (_GLYPH_W + _SCALE) - _SCALE if text else 0


def encode_png(canvas: Canvas) -> bytes:
    """``canvas`` as an 8-bit truecolor PNG."""
    stride = 3 * canvas.width
    raw = b"".join(
        b"\x00" + bytes(canvas.pixels[row * stride : (row + 1) * stride])
        for row in range(canvas.height)
    )
    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _label(value: float) -> str:
    """A short label for an axis end: ``0.0123``, ``12.3``, ``1.2e-05``."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.1e}"


def write_line_chart(
    path: Path,
    points: Sequence[tuple[float, float]],
    *,
    y_label: str = "loss",
    x_label: str = "step",
    width: int = 640,
    height: int = 360,
) -> None:
    """Draw ``points`` (x, y), in x order, as a line chart and write it to ``path``.

    Non-finite values are skipped. The y range is the data's, padded by 5 % (but not below
    zero for data that is not negative); the axis ends are labelled with their values.
    """
    finite = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    canvas = Canvas(width, height)
    left, right, top, bottom = 70, width - 20, 30, height - 40
    if finite:
        x_min, x_max = min(x for x, _ in finite), max(x for x, _ in finite)
        y_min, y_max = min(y for _, y in finite), max(y for _, y in finite)
    else:
        x_min = x_max = y_min = y_max = 0.0
    pad = (y_max - y_min) * 0.05 or max(abs(y_max) * 0.05, 1e-6)
    y_low = max(y_min - pad, 0.0) if y_min >= 0 else y_min - pad
    y_high = y_max + pad
    x_span = (x_max - x_min) or 1.0

    def to_pixel(x: float, y: float) -> tuple[int, int]:
        px = left + round((x - x_min) / x_span * (right - left))
        py = bottom - round((y - y_low) / (y_high - y_low) * (bottom - top))
        return px, py

    for i in range(5):
        y = top + round(i * (bottom - top) / 4)
        canvas.line(left, y, right, y, _GRID)
    canvas.line(left, top, left, bottom, _AXIS)
    canvas.line(left, bottom, right, bottom, _AXIS)
    pixels = [to_pixel(x, y) for x, y in finite]
    for (x0, y0), (x1, y1) in itertools.pairwise(pixels):
        canvas.line(x0, y0, x1, y1, _LINE, thickness=2)
    if len(pixels) == 1:
        canvas.line(*pixels[0], *pixels[0], _LINE, thickness=4)

    high, low = _label(y_high), _label(y_low)
    canvas.text(left - 8 - _text_width(high), top - _GLYPH_H // 2, high)
    canvas.text(left - 8 - _text_width(low), bottom - _GLYPH_H // 2, low)
    canvas.text(left, 8, y_label)
    first, last = _label(x_min), _label(x_max)
    canvas.text(left, bottom + 8, first)
    canvas.text(right - _text_width(last), bottom + 8, last)
    canvas.text((left + right - _text_width(x_label)) // 2, bottom + 20, x_label)
    path.write_bytes(encode_png(canvas))
