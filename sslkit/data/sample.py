"""Procedurally generated "sample" dataset: small labelled 32x32 RGB scenes.

This is the embedded, offline default dataset (``--data sample``).  It exists so
that the self-supervised pipelines (notably the RotNet pretext task: predict
whether an image was rotated by 0/90/180/270 degrees) and linear probes on the
10 classes can be run anywhere, without downloads, and reproducibly.

Why orientation is learnable *from content*: every scene is drawn with gravity.
The sky (a vertical day or dusk gradient, sometimes with clouds) is at the top,
the ground or water is at the bottom, and every object stands on the ground
with its "up" part up: roofs above walls, canopies above trunks, heads above
legs, wheels under car bodies, sails above hulls, peaks above mountain bases,
lamps on top of posts, rocket flames below the rocket, blooms on top of stems.
There are deliberately no orientation artefacts: no borders, no text, noise is
isotropic, drawing is 2x supersampled so edges look the same in every
direction, and each image is mirrored left/right with probability 1/2 so that
only the up/down axis carries information.

The 10 classes differ in shape and colour layout, so a linear probe on learned
features has something to separate.  Randomised per image: horizon height,
day/dusk sky colours, ground colour, object position, size and colours,
clouds, and mild pixel noise / brightness jitter.

Layout: classes are *interleaved*: image ``i`` has label ``i % 10``, so any
prefix of the arrays is (nearly) class balanced.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SAMPLE_CLASSES: tuple[str, ...] = (
    "house",
    "tree",
    "person",
    "car",
    "boat",
    "sun",
    "mountain",
    "lamppost",
    "rocket",
    "flower",
)

IMAGE_SIZE = 32
_SS = 2  # supersampling factor: draw at 64x64, average 2x2 blocks (cheap anti-aliasing)
_RES = IMAGE_SIZE * _SS
# Pixel-centre coordinates expressed in *output* pixel units, so shape code
# below thinks in the 32x32 frame regardless of the supersampling factor.
_YY, _XX = (np.mgrid[0:_RES, 0:_RES].astype(np.float32) + 0.5) / _SS
_ROWS = _YY[:, 0]

Mask = np.ndarray
Colour = np.ndarray

# ----------------------------------------------------------------------------- shapes


def _rect(y0: float, y1: float, x0: float, x1: float) -> Mask:
    return (y0 <= _YY) & (y1 > _YY) & (x0 <= _XX) & (x1 > _XX)


def _disk(cy: float, cx: float, r: float) -> Mask:
    return (_YY - cy) ** 2 + (_XX - cx) ** 2 <= r * r


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> Mask:
    return ((_YY - cy) / ry) ** 2 + ((_XX - cx) / rx) ** 2 <= 1.0


def _convex(pts: list[tuple[float, float]]) -> Mask:
    """Convex polygon from (y, x) vertices in either winding order (half-plane test)."""
    p = np.asarray(pts, dtype=np.float32)
    q = np.roll(p, -1, axis=0)
    cross = (q[:, None, None, 1] - p[:, None, None, 1]) * (_YY - p[:, None, None, 0]) - (
        q[:, None, None, 0] - p[:, None, None, 0]
    ) * (_XX - p[:, None, None, 1])
    return (cross >= 0).all(0) | (cross <= 0).all(0)


def _trapezoid(y_top: float, y_bot: float, cx: float, hw_top: float, hw_bot: float) -> Mask:
    """Horizontally centred trapezoid (hull, cabin, lamp head, fins) given half-widths."""
    return _convex([(y_top, cx - hw_top), (y_top, cx + hw_top), (y_bot, cx + hw_bot), (y_bot, cx - hw_bot)])


def _segment(y0: float, x0: float, y1: float, x1: float, width: float) -> Mask:
    """Thick line segment (capsule) of the given full width."""
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((_YY - y0) * dy + (_XX - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0.0, 1.0)
    return (_YY - y0 - t * dy) ** 2 + (_XX - x0 - t * dx) ** 2 <= (width / 2) ** 2


def _paint(img: np.ndarray, mask: Mask, colour: Colour, alpha: float = 1.0) -> None:
    if alpha >= 1.0:
        img[mask] = colour
    else:
        img[mask] = img[mask] * (1 - alpha) + colour * alpha


def _jit(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float = 20.0) -> Colour:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _pick(rng: np.random.Generator, palette: list[tuple[int, int, int]], amount: float = 20.0) -> Colour:
    return _jit(rng, palette[rng.integers(len(palette))], amount)


def _base(rng: np.random.Generator, horizon: float, height: float) -> float:
    """Ground-contact row for an object of given height: below the horizon, top stays in frame."""
    lo = max(horizon + 1.0, height + 1.5)
    return float(rng.uniform(lo, max(lo, 30.5)))


# ----------------------------------------------------------------------------- background

_GROUNDS = [(70, 140, 50), (40, 100, 40), (120, 95, 60), (190, 170, 110), (95, 120, 55)]
_WATER = [(30, 80, 150), (20, 100, 130), (40, 60, 120)]
_DARK = [(40, 30, 25), (60, 60, 60), (25, 25, 35)]
_BRIGHT = [(200, 40, 40), (40, 80, 200), (230, 200, 40), (40, 160, 60), (230, 120, 30), (150, 50, 160)]
_WALLS = [(220, 210, 190), (200, 70, 50), (230, 200, 120), (150, 110, 80)]
_ROOFS = [(150, 40, 30), (80, 60, 50), (90, 90, 100)]
_HULLS = [(120, 60, 30), (180, 40, 40), (230, 230, 230), (40, 40, 60)]
_PETALS = [(230, 40, 60), (240, 120, 200), (150, 60, 200), (250, 250, 250), (250, 220, 40), (250, 130, 30)]


def _background(rng: np.random.Generator, water: bool = False) -> tuple[np.ndarray, float]:
    """Sky gradient above a random horizon, darker ground/water below (the gravity cue)."""
    horizon = float(rng.uniform(17.0, 24.0))
    if rng.random() < 0.7:  # day: deep blue zenith fading to pale blue at the horizon
        top, low = _jit(rng, (50, 100, 200), 25), _jit(rng, (170, 210, 240), 15)
    else:  # dusk: dark violet zenith fading to orange at the horizon
        top, low = _jit(rng, (50, 40, 110), 20), _jit(rng, (240, 150, 90), 20)
    ground = _pick(rng, _WATER if water else _GROUNDS, 15)
    t = np.clip(_ROWS / horizon, 0, 1)[:, None]
    sky = top * (1 - t) + low * t
    # ground gets a little darker towards the viewer (bottom), like real terrain/water
    g = np.clip((_ROWS - horizon) / (IMAGE_SIZE - horizon), 0, 1)[:, None]
    gnd = ground * (1.0 - 0.25 * g)
    col = np.where((horizon > _ROWS)[:, None], sky, gnd).astype(np.float32)
    img = np.repeat(col[:, None, :], _RES, axis=1)
    for _ in range(rng.integers(0, 3)):  # clouds: flat-bottomed puffs, only in the sky
        cy, cx, w = rng.uniform(2, horizon - 6), rng.uniform(0, 32), rng.uniform(3, 6)
        puff = _ellipse(cy, cx, w * 0.35, w) | _disk(cy - w * 0.2, cx + rng.uniform(-2, 2), w * 0.45)
        _paint(img, puff & (cy + w * 0.2 > _YY), _jit(rng, (245, 245, 245), 10), 0.85)
    return img, horizon


# ----------------------------------------------------------------------------- classes


def _house(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    w, roof = rng.uniform(10, 19), rng.uniform(4, 8)
    wall_h = w * rng.uniform(0.55, 0.8)
    b, cx = _base(rng, h, wall_h + roof), rng.uniform(11, 21)
    top = b - wall_h
    _paint(img, _rect(top, b, cx - w / 2, cx + w / 2), _pick(rng, _WALLS))
    _paint(img, _convex([(top - roof, cx), (top, cx - w / 2 - 1.5), (top, cx + w / 2 + 1.5)]), _pick(rng, _ROOFS))
    dx = rng.uniform(-w / 4, w / 4)
    _paint(img, _rect(b - wall_h * 0.6, b, cx + dx - 1.3, cx + dx + 1.3), _pick(rng, _DARK))
    wx = cx - dx * 0.2 - np.sign(dx + 1e-3) * w / 4
    _paint(img, _rect(top + wall_h * 0.2, top + wall_h * 0.45, wx - 1.3, wx + 1.3), _jit(rng, (150, 200, 240), 15))


def _tree(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    trunk_h, r = rng.uniform(4, 7), rng.uniform(4, 7)
    conifer = rng.random() < 0.4
    b, cx = _base(rng, h, trunk_h + (2.6 if conifer else 2.0) * r), rng.uniform(9, 23)
    _paint(img, _rect(b - trunk_h - 1, b, cx - 1.2, cx + 1.2), _jit(rng, (100, 65, 35)))
    green = _pick(rng, [(40, 120, 40), (30, 90, 40), (80, 140, 50)])
    if conifer:  # stacked triangles, narrowing upwards
        for k in range(3):
            y = b - trunk_h - k * r * 0.7
            _paint(img, _convex([(y - r * 1.2, cx), (y, cx - r * (1 - 0.2 * k)), (y, cx + r * (1 - 0.2 * k))]), green)
    else:  # round canopy
        cy = b - trunk_h - r  # lobes end where the trunk starts, so it stays visible
        lobes = _disk(cy + r * 0.3, cx - r * 0.5, r * 0.7) | _disk(cy + r * 0.3, cx + r * 0.5, r * 0.7)
        _paint(img, _disk(cy, cx, r) | lobes, green)


def _person(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    ht = rng.uniform(15, 22)
    b, cx = _base(rng, h, ht), rng.uniform(9, 23)
    hip, sh = b - ht * 0.42, b - ht * 0.75
    legs, w = _pick(rng, [(30, 40, 90), (40, 40, 40), (90, 70, 50)]), ht * 0.13
    _paint(img, _segment(hip, cx, b - 0.5, cx - ht * 0.12, 1.8) | _segment(hip, cx, b - 0.5, cx + ht * 0.12, 1.8), legs)
    shirt = _pick(rng, _BRIGHT)
    arm = rng.uniform(-0.1, 0.25) * ht  # hands hang down or raised a little
    hand = sh + ht * 0.3 - arm
    arms = _segment(sh + 1, cx - w, hand, cx - ht * 0.25, 1.6) | _segment(sh + 1, cx + w, hand, cx + ht * 0.25, 1.6)
    _paint(img, arms, shirt)
    _paint(img, _rect(sh, hip + 0.5, cx - w, cx + w), shirt)
    skin = _pick(rng, [(240, 200, 160), (190, 140, 100), (120, 80, 55)], 10)
    r = ht * 0.12
    _paint(img, _disk(sh - r, cx, r), skin)
    _paint(img, _ellipse(sh - r * 1.6, cx, r * 0.5, r * 1.05) & (sh - r * 1.4 > _YY), _pick(rng, _DARK))  # hair on top


def _car(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    w = rng.uniform(15, 23)
    wr, body_h = w * 0.13, w * 0.22
    b, cx = _base(rng, h, wr + body_h * 2.1), rng.uniform(w / 2 + 1, 31 - w / 2)
    body_bot, body_top = b - wr, b - wr - body_h
    colour = _pick(rng, _BRIGHT)
    _paint(img, _rect(body_top, body_bot, cx - w / 2, cx + w / 2), colour)
    cab_top, cw = body_top - body_h * 1.0, w * 0.3
    _paint(img, _trapezoid(cab_top, body_top, cx, cw - 1, cw + 2), colour)
    _paint(img, _trapezoid(cab_top + 1, body_top, cx, cw - 1.5, cw + 0.5), _jit(rng, (170, 210, 235), 10))  # windows
    for wx in (cx - w * 0.3, cx + w * 0.3):  # wheels under the body: the key "down" cue
        _paint(img, _disk(b - wr, wx, wr), _jit(rng, (25, 25, 25), 8))
        _paint(img, _disk(b - wr, wx, wr * 0.4), _jit(rng, (170, 170, 170), 10))


def _boat(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    w, hull_h, mast = rng.uniform(12, 20), rng.uniform(3, 4.5), rng.uniform(10, 15)
    b, cx = _base(rng, h + 1.5, hull_h + mast), rng.uniform(w / 2 + 1, 31 - w / 2)
    deck = b - hull_h
    _paint(img, _trapezoid(deck, b, cx, w / 2, w * 0.3), _pick(rng, _HULLS))
    mx = cx + rng.uniform(-w / 6, w / 6)
    _paint(img, _segment(deck, mx, deck - mast, mx, 1.0), _jit(rng, (70, 50, 30)))
    sail = _pick(rng, [(245, 245, 240), (240, 230, 200), (220, 60, 50)], 10)
    _paint(img, _convex([(deck - mast + 0.5, mx + 0.6), (deck - 1, mx + 0.6), (deck - 1, mx + w * 0.42)]), sail)
    _paint(img, _convex([(deck - mast * 0.8, mx - 0.6), (deck - 1, mx - 0.6), (deck - 1, mx - w * 0.28)]), sail)
    # a few light ripple streaks on the water (horizontal, so they also say "horizon")
    for _ in range(3):
        y, x = rng.uniform(h + 1, 31), rng.uniform(2, 30)
        _paint(img, _rect(y, y + 0.5, x - 2, x + 2), _jit(rng, (200, 220, 240), 10), 0.5)


def _sun(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    r = rng.uniform(3, 5.5)
    cy, cx = rng.uniform(r + 1.5, h - r - 1), rng.uniform(6, 26)
    colour = _pick(rng, [(255, 230, 60), (255, 180, 40), (255, 245, 150)], 8)
    _paint(img, _disk(cy, cx, r * 1.8), colour, 0.3)  # halo
    if rng.random() < 0.6:  # rays
        for a in np.linspace(0, 2 * np.pi, 8, endpoint=False) + rng.uniform(0, 0.8):
            dy, dx = np.sin(a) * r, np.cos(a) * r
            _paint(img, _segment(cy + dy * 1.3, cx + dx * 1.3, cy + dy * 2.0, cx + dx * 2.0, 1.0), colour)
    _paint(img, _disk(cy, cx, r), colour)
    for _ in range(rng.integers(1, 4)):  # grass tufts on the ground
        y, x = rng.uniform(h + 2, 31), rng.uniform(2, 30)
        _paint(img, _convex([(y - 2.5, x), (y, x - 1), (y, x + 1)]), _jit(rng, (40, 110, 40)))


def _mountain(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    for k in range(rng.integers(1, 3), -1, -1):  # far (lighter) ranges first, big one in front
        py, px = rng.uniform(2, h - 8) + k * 2, rng.uniform(6, 26)
        hw, base = rng.uniform(10, 18), h + rng.uniform(0, 3)
        peak = _convex([(py, px), (base, px - hw), (base, px + hw)])
        _paint(img, peak, _pick(rng, [(110, 100, 95), (100, 85, 70), (90, 100, 120)]) + 25 * k)
        _paint(img, peak & (py + (base - py) * rng.uniform(0.2, 0.35) > _YY), _jit(rng, (245, 245, 250), 8))


def _lamppost(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    ht = rng.uniform(16, 24)
    b, cx = _base(rng, h, ht), rng.uniform(9, 23)
    top, pole = b - ht, _pick(rng, _DARK, 10)
    _paint(img, _rect(b - 1.2, b, cx - 2, cx + 2), pole)  # foot
    _paint(img, _segment(b, cx, top, cx, 1.4), pole)
    arm = rng.choice([-1.0, 1.0]) * rng.uniform(3, 5)
    _paint(img, _segment(top, cx, top, cx + arm, 1.2), pole)
    light = _pick(rng, [(255, 230, 120), (255, 250, 200), (255, 200, 90)], 8)
    _paint(img, _disk(top + 2.0, cx + arm, 3.5), light, 0.35)  # glow
    _paint(img, _trapezoid(top, top + 2.2, cx + arm, 1.5, 1.1), light)


def _rocket(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    w, ln, flame = rng.uniform(2, 3), rng.uniform(10, 14), rng.uniform(4, 8)
    bot, cx = rng.uniform(ln + w * 2 + 1, min(h + 6, 31 - flame)), rng.uniform(8, 24)
    top, red = bot - ln, _pick(rng, [(210, 40, 40), (40, 60, 200), (230, 120, 30)])
    plume = _convex([(bot, cx), (bot + flame, cx - 0.2), (bot + flame, cx + 0.2)])  # flame tapers downwards
    _paint(img, plume | _ellipse(bot + flame * 0.35, cx, flame * 0.45, w * 0.9), _jit(rng, (255, 150, 30), 15))
    _paint(img, _ellipse(bot + flame * 0.25, cx, flame * 0.25, w * 0.5), _jit(rng, (255, 240, 150), 10))
    _paint(img, _trapezoid(bot - 4, bot, cx, w, w + 2.5), red)  # fins
    _paint(img, _rect(top, bot, cx - w, cx + w), _jit(rng, (225, 225, 230), 15))
    _paint(img, _convex([(top - w * 2, cx), (top, cx - w), (top, cx + w)]), red)  # nose cone points up
    _paint(img, _disk(top + ln * 0.3, cx, w * 0.5), _jit(rng, (60, 120, 200), 15))


def _flower(img: np.ndarray, rng: np.random.Generator, h: float) -> None:
    for k in range(1 + int(rng.random() < 0.5)):  # optional second, smaller flower
        s = rng.uniform(0.85, 1.2) * (1.0 if k == 0 else 0.6)
        stem, pr = 14 * s, 2.4 * s
        b, cx = _base(rng, h, stem + pr * 2.5), rng.uniform(7, 25)
        cy, green = b - stem, _jit(rng, (50, 140, 50))
        _paint(img, _segment(b, cx, cy, cx, 1.2), green)
        leaves = _ellipse(b - stem * 0.35, cx + 2.2 * s, s, 2.2 * s) | _ellipse(
            b - stem * 0.55, cx - 2.2 * s, s, 2.2 * s
        )
        _paint(img, leaves, green)
        petal = _pick(rng, _PETALS, 15)
        n = rng.integers(5, 8)
        for a in np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 1):
            _paint(img, _disk(cy + np.sin(a) * pr * 1.1, cx + np.cos(a) * pr * 1.1, pr), petal)
        _paint(img, _disk(cy, cx, pr * 0.8), _pick(rng, [(250, 210, 40), (120, 70, 30)], 10))


_DRAW: tuple[Callable[[np.ndarray, np.random.Generator, float], None], ...] = (
    _house,
    _tree,
    _person,
    _car,
    _boat,
    _sun,
    _mountain,
    _lamppost,
    _rocket,
    _flower,
)


# ----------------------------------------------------------------------------- public API


def generate_sample(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Generate ``n_per_class`` images for each of the 10 classes.

    Returns ``(images, labels, class_names)``: images uint8 ``[N, 3, 32, 32]``
    (NCHW), labels int64 ``[N]`` with ``N = 10 * n_per_class``, classes
    interleaved (label of image ``i`` is ``i % 10``), and ``list(SAMPLE_CLASSES)``.
    A pure function of ``(n_per_class, seed)``: only a private
    ``Generator(PCG64(seed))`` is used, never the global numpy RNG.
    """
    if n_per_class < 0:
        raise ValueError("n_per_class must be >= 0")
    rng = np.random.Generator(np.random.PCG64(seed))
    n_cls = len(SAMPLE_CLASSES)
    n = n_per_class * n_cls
    images = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % n_cls
    for i in range(n):
        label = int(labels[i])
        img, horizon = _background(rng, water=SAMPLE_CLASSES[label] == "boat")
        _DRAW[label](img, rng, horizon)
        small = img.reshape(IMAGE_SIZE, _SS, IMAGE_SIZE, _SS, 3).mean(axis=(1, 3))
        if rng.random() < 0.5:  # mirror: left/right carries no orientation information
            small = small[:, ::-1]
        small = small * rng.uniform(0.85, 1.15) + rng.normal(0.0, rng.uniform(2.0, 6.0), small.shape)
        images[i] = np.clip(np.rint(small), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return images, labels, list(SAMPLE_CLASSES)
