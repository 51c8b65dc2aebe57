"""Synthetic camera media for the compliance tests: kitchen scenes and a camera model, in numpy.

Scenes are drawn at a 640 x 360 capture size (a typical sub-stream) as float luma, then go
through a camera model (exposure gain above black, optical blur, fresh sensor noise per frame,
8-bit quantisation) before the code under test sees them. Everything is seeded: a test that
fails, fails the same way every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from kitchencam.compliance.analysers import (
    Change,
    FrameMeasures,
    Luminance,
    Sharpness,
    Similarity,
    Texture,
)

Float = npt.NDArray[np.float64]
Gray = npt.NDArray[np.uint8]

CAPTURE_W = 640
CAPTURE_H = 360


def gaussian_blur(image: Float, sigma: float) -> Float:
    """Separable Gaussian blur with edge padding (numpy only)."""
    if sigma <= 0:
        return image
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, radius, mode="edge")
    h, w = image.shape
    rows = np.zeros((h + 2 * radius, w))
    for i, k in enumerate(kernel):
        rows += k * padded[:, i : i + w]
    out = np.zeros((h, w))
    for i, k in enumerate(kernel):
        out += k * rows[i : i + h, :]
    return out


def rotate(image: Float, degrees: float) -> Float:
    """Rotate about the centre (nearest neighbour, edges extended)."""
    h, w = image.shape
    a = math.radians(degrees)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    sx = math.cos(a) * (xx - cx) + math.sin(a) * (yy - cy) + cx
    sy = -math.sin(a) * (xx - cx) + math.cos(a) * (yy - cy) + cy
    iy = np.clip(np.rint(sy), 0, h - 1).astype(int)
    ix = np.clip(np.rint(sx), 0, w - 1).astype(int)
    return image[iy, ix]


# Seven-segment digits: segments a b c d e f g.
_SEGMENTS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
}


def draw_clock(image: Float, seconds: float, x: int = 12, y: int = 10, scale: int = 2) -> Float:
    """Burn an HH:MM:SS clock in white seven-segment digits on a black box, like a camera OSD."""
    out = image.copy()
    s = int(seconds)
    text = f"{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
    dw, dh, t = 6 * scale, 10 * scale, scale
    out[y - t : y + dh + 2 * t, x - t : x + len(text) * (dw + 2 * t) + t] = 16.0
    cx = x
    for ch in text:
        if ch == ":":
            out[y + dh // 3 : y + dh // 3 + t, cx + dw // 2 : cx + dw // 2 + t] = 235.0
            out[y + 2 * dh // 3 : y + 2 * dh // 3 + t, cx + dw // 2 : cx + dw // 2 + t] = 235.0
        else:
            segs = _SEGMENTS[ch]
            half = dh // 2
            boxes = {
                "a": (y, y + t, cx, cx + dw),
                "b": (y, y + half, cx + dw - t, cx + dw),
                "c": (y + half, y + dh, cx + dw - t, cx + dw),
                "d": (y + dh - t, y + dh, cx, cx + dw),
                "e": (y + half, y + dh, cx, cx + t),
                "f": (y, y + half, cx, cx + t),
                "g": (y + half - t // 2, y + half - t // 2 + t, cx, cx + dw),
            }
            for seg in segs:
                y0, y1, x0, x1 = boxes[seg]
                out[y0:y1, x0:x1] = 235.0
        cx += dw + 2 * t
    return out


@dataclass
class Kitchen:
    """A kitchen drawn on a panorama twice the capture width; a camera sees a 640 px window.

    ``palette`` re-draws the same geometry with other reflectances (what infrared does to
    fabrics, paints and food), ``low_texture`` draws a plain tiled wall with faint fixtures.
    """

    seed: int = 1
    palette: int = 0
    low_texture: bool = False
    width: int = 2 * CAPTURE_W
    height: int = CAPTURE_H
    panorama: Float = field(init=False)

    def __post_init__(self) -> None:
        geo = np.random.default_rng(self.seed)
        tone = np.random.default_rng(10_000 + self.seed * 100 + self.palette)
        h, w = self.height, self.width
        yy = np.arange(h, dtype=np.float64)[:, None]
        img = np.broadcast_to(95.0 + 45.0 * yy / h, (h, w)).copy()
        if self.low_texture:
            # A white-tiled wall, a faint door frame and a switch: very little to go on.
            img[:, :] = 150.0 + 10.0 * yy / h
            img[::40, :] -= 6.0
            img[:, ::40] -= 6.0
            for _ in range(4):
                y0 = int(geo.integers(40, h - 120))
                x0 = int(geo.integers(0, w - 120))
                img[y0 : y0 + int(geo.integers(40, 110)), x0 : x0 + int(geo.integers(20, 110))] += (
                    float(tone.uniform(-12, 12))
                )
            self.panorama = gaussian_blur(img, 0.7)
            return
        # Tiled wall with grout lines in the upper part.
        wall = int(0.45 * h)
        img[:wall:24, :] -= 28.0
        img[:wall, ::24] -= 28.0
        # Shelves, cabinets, appliances: rectangles with borders and handles.
        for _ in range(34):
            rh, rw = int(geo.integers(20, 140)), int(geo.integers(20, 200))
            y0, x0 = int(geo.integers(0, h - rh)), int(geo.integers(0, w - rw))
            level = float(tone.uniform(30, 230))
            img[y0 : y0 + rh, x0 : x0 + rw] = level
            img[y0 : y0 + 2, x0 : x0 + rw] = level * 0.6
            img[y0 : y0 + rh, x0 : x0 + 2] = level * 0.6
            if rw > 40 and rh > 40:
                hy, hx = y0 + rh // 2, x0 + rw - 12
                img[hy - 8 : hy + 8, hx : hx + 3] = float(tone.uniform(20, 240))
        # Counter top with a fixed fine texture (granite), and pots as discs.
        counter = int(0.62 * h)
        texture = gaussian_blur(geo.normal(0.0, 14.0, (h - counter, w)), 0.8)
        img[counter:, :] = 175.0 + texture
        img[counter : counter + 3, :] = 60.0
        for _ in range(12):
            r = int(geo.integers(10, 40))
            cy, cx = int(geo.integers(counter - 30, h - r)), int(geo.integers(r, w - r))
            disc = (yy - cy) ** 2 + (np.arange(w)[None, :] - cx) ** 2 <= r * r
            img[disc] = float(tone.uniform(25, 220))
            rim = disc & ((yy - cy) ** 2 + (np.arange(w)[None, :] - cx) ** 2 >= (r - 3) ** 2)
            img[rim] = float(tone.uniform(150, 240))
        self.panorama = gaussian_blur(np.clip(img, 18.0, 240.0), 0.7)

    def view(self, pan: int = 0) -> Float:
        """The 640 x 360 window starting ``pan`` pixels into the panorama."""
        return self.panorama[:, pan : pan + CAPTURE_W].copy()


@dataclass
class Camera:
    """Exposure, optics and sensor: turns scene luma into decoded 8-bit frames."""

    seed: int = 7
    noise: float = 1.5
    """Sensor noise sigma at capture size, grey levels."""
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def shoot(
        self,
        scene: Float,
        *,
        gain: float = 1.0,
        blur: float = 0.0,
        noise: float | None = None,
        veil: float = 0.0,
    ) -> Gray:
        """One frame: ``gain`` scales the signal above black, ``veil`` blends towards white
        (steam), ``blur`` is the optical blur sigma in capture pixels."""
        img = 16.0 + (scene - 16.0) * gain
        if veil:
            img = (1.0 - veil) * img + veil * 225.0
        img = gaussian_blur(img, blur)
        sigma = self.noise if noise is None else noise
        if sigma > 0:
            img = img + self.rng.normal(0.0, sigma, img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def person(scene: Float, cx: float, cy: float, rx: float, ry: float, level: float = 45.0) -> Float:
    """A person (or arm) as a soft-edged dark ellipse with a shirt texture, drawn over a scene."""
    h, w = scene.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    mask = gaussian_blur(inside.astype(np.float64), 6.0)
    shirt = level + 12.0 * np.sign(np.sin(xx / 9.0))
    return scene * (1.0 - mask) + shirt * mask


def cloth(level: float = 120.0, vignette: float = 0.35, seed: int = 3) -> Float:
    """A cloth over the lens: a uniform fill, lens vignetting and a soft fold of light."""
    h, w = CAPTURE_H, CAPTURE_W
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    rng = np.random.default_rng(seed)
    folds = gaussian_blur(rng.normal(0.0, 1.0, (h, w)), 40.0)
    folds *= 6.0 / max(float(folds.std()), 1e-9)
    return 16.0 + (level - 16.0) * (1.0 - vignette * r2 / 2.0) + folds


def hand(scene: Float, level: float = 150.0) -> Float:
    """A hand held against the lens: skin filling the view, far out of focus, light leaking in
    at one edge."""
    h, w = scene.shape
    xx = np.arange(w, dtype=np.float64)[None, :]
    leak = np.clip((xx - 0.8 * w) / (0.2 * w), 0.0, 1.0)
    img = level * (1.0 - leak) + gaussian_blur(scene, 30.0) * leak
    return gaussian_blur(np.broadcast_to(img, (h, w)).copy(), 25.0)


def measures(**values: Any) -> FrameMeasures:
    """Literal measures of a good kitchen picture, with ``part__field=value`` overrides
    (``change=None`` or ``similarity=None`` drop a part, ``repeated=True`` sets the flag)."""
    parts: dict[str, Any] = {
        "luminance": Luminance(mean=120.0, std=50.0, p02=30.0, p98=210.0, dark_fraction=0.02),
        "texture": Texture(edge_density=0.12, detail=0.11, contrast=0.4, noise=0.9),
        "sharpness": Sharpness(ratio=0.68, textured_fraction=0.9, energy=0.02),
        "change": Change(
            bulk=0.9, quiet=0.8, moving_fraction=0.05, informative_fraction=1.0, gain=1.0
        ),
        "repeated": False,
        "similarity": Similarity(score=0.9, shift_x=0, shift_y=0, reference_structure=0.2),
    }
    for key, value in values.items():
        if "__" in key:
            part, name = key.split("__")
            parts[part] = replace(parts[part], **{name: value})
        else:
            parts[key] = value
    return FrameMeasures(**parts)


class Media:
    """What the fixture hands to tests: the helpers above in one place."""

    Kitchen = Kitchen
    Camera = Camera
    gaussian_blur = staticmethod(gaussian_blur)
    rotate = staticmethod(rotate)
    draw_clock = staticmethod(draw_clock)
    person = staticmethod(person)
    cloth = staticmethod(cloth)
    hand = staticmethod(hand)
    measures = staticmethod(measures)


@pytest.fixture(scope="session")
def media() -> type[Media]:
    """Synthetic kitchen scenes and a camera model."""
    return Media


# --- the shells: real Redis, the real registry --------------------------------------------


@dataclass
class World:
    """A real Redis with a registered restaurant and camera, and the compliance store."""

    redis: Any
    registry: Any
    store: Any
    restaurant: Any
    camera: Any


@pytest.fixture
async def world(redis_url: str, resolver: Any) -> Any:
    """A restaurant in Wan Chai with one camera, on the session's Redis (emptied)."""
    import redis.asyncio as aioredis

    from kitchencam.addresses import AddressPolicy
    from kitchencam.compliance.store import ComplianceStore
    from kitchencam.models import CameraCreate, RestaurantCreate
    from kitchencam.registry import Registry
    from kitchencam.secretbox import SecretBox, generate_key
    from tests.helpers import camera_body, restaurant_body

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    registry = Registry(client, SecretBox(generate_key()), AddressPolicy(resolver=resolver))
    restaurant, _ = await registry.create_restaurant(
        RestaurantCreate.model_validate(restaurant_body())
    )
    camera = await registry.create_camera(restaurant.id, CameraCreate.model_validate(camera_body()))
    yield World(client, registry, ComplianceStore(client), restaurant, camera)
    await client.aclose()
