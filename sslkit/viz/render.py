"""Small raster helpers on Pillow + numpy: a colour map, labelled grids and a line chart."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Anchor colours of a perceptually ordered map (dark blue -> cyan -> yellow -> red), linearly
# interpolated: enough to read "where is activation high" without matplotlib.
_ANCHORS = np.array(
    [[0, 0, 64], [0, 64, 192], [0, 192, 224], [128, 224, 96], [255, 224, 0], [255, 96, 0], [192, 0, 0]],
    dtype=np.float64,
)
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def colormap(values: np.ndarray) -> np.ndarray:
    """[H, W] values in [0, 1] -> [H, W, 3] uint8 colours."""
    x = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (x - lo)[..., None]
    return (_ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac).astype(np.uint8)


def font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def grid(
    tiles: Sequence[Sequence[np.ndarray]], col_titles: Sequence[str] = (), pad: int = 4, title_h: int = 16
) -> Image.Image:
    """Rows of equally sized [H, W, 3] uint8 tiles on a white sheet, with optional column titles."""
    th, tw = tiles[0][0].shape[:2]
    rows, cols = len(tiles), max(len(r) for r in tiles)
    top = title_h if col_titles else 0
    sheet = Image.new("RGB", (cols * (tw + pad) + pad, top + rows * (th + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for j, t in enumerate(col_titles):
        draw.text((pad + j * (tw + pad) + 2, 2), t, fill="black", font=font())
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            sheet.paste(Image.fromarray(tile), (pad + j * (tw + pad), top + pad + i * (th + pad)))
    return sheet


def upscale(tile: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    mode = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(tile).resize((size, size), mode))


def line_chart(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    size: tuple[int, int] = (480, 320),
) -> Image.Image:
    """One panel: named (x, y) series with axes, 5 ticks per axis and a legend."""
    w, h = size
    left, right, top, bottom = 52, 12, 24, 36
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    xs = [x for s in series.values() for x in s[0]]
    ys = [y for s in series.values() for y in s[1]]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    margin = 0.05 * (y1 - y0)
    y0, y1 = y0 - margin, y1 + margin

    def px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * (w - left - right), top + (y1 - y) / (y1 - y0) * (h - top - bottom)

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for k in range(5):
        xv, yv = x0 + k * (x1 - x0) / 4, y0 + k * (y1 - y0) / 4
        gx, _ = px(xv, y0)
        _, gy = px(x0, yv)
        d.line([(gx, h - bottom), (gx, h - bottom + 4)], fill="black")
        d.text((gx - 8, h - bottom + 6), f"{xv:g}" if xv == int(xv) else f"{xv:.1f}", fill="black", font=font())
        d.line([(left - 4, gy), (left, gy)], fill="black")
        d.line([(left, gy), (w - right, gy)], fill=(230, 230, 230))
        d.text((2, gy - 6), f"{yv:.3g}", fill="black", font=font())
    d.text((left, 4), title, fill="black", font=font())
    d.text(((w - left) // 2 + left - 16, h - 14), xlabel, fill="black", font=font())
    for i, (name, (sx, sy)) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = [px(x, y) for x, y in zip(sx, sy, strict=True)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for p in pts:
            d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
        ly = top + 6 + 14 * i
        d.line([(w - right - 110, ly + 5), (w - right - 92, ly + 5)], fill=colour, width=3)
        d.text((w - right - 88, ly), name, fill="black", font=font())
    return img
