"""Build the labelled compliance clip set from real footage (numpy + PyAV only).

Sources (Debian package ``opencv-doc``, see README.md for licences):

* ``/usr/share/doc/opencv-doc/examples/data/vtest.avi``: a real fixed surveillance camera,
  768 x 576, 10 fps, 79.5 s;
* ``/usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz``: a real hand-held cup in front of a
  plain white wall (low texture), 640 x 480, 8 s.

Every clip is 320 x 240, 10 fps, H.264 (x264, no B-frames, a keyframe every 2 s exactly, no
scene-cut keyframes), 56 s. Tampering starts at ``ONSET_S`` (30 s: the checker needs 20 s to
learn a baseline and approve the reference view, then has time to learn its typical
similarity). Labels go to ``labels.json``. Deterministic: same sources, same clips.

    apt-get install opencv-doc
    .venv/bin/python bench/clips/make_clips.py            # writes bench/clips/*.mp4
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

Rgb = npt.NDArray[np.float64]

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
CUP = Path("/usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz")
OUT = Path(__file__).resolve().parent
WIDTH, HEIGHT, FPS, GOP = 320, 240, 10, 20
DURATION_S = 56.0
ONSET_S = 30.0
CRF = "32"
BLACK = 16.0


def gaussian_blur(image: Rgb, sigma: float) -> Rgb:
    """Separable Gaussian blur of an H x W x C image, edges extended."""
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    pad = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    rows = sum(k * pad[:, i : i + w] for i, k in enumerate(kernel))
    return sum(k * rows[i : i + h] for i, k in enumerate(kernel))  # type: ignore[return-value]


def scaled(frame: av.VideoFrame, crop: tuple[int, int, int, int] | None = None) -> Rgb:
    """The frame (optionally cropped to x, y, w, h) as 320 x 240 float RGB."""
    rgb = frame.to_ndarray(format="rgb24")
    if crop is not None:
        x, y, w, h = crop
        rgb = rgb[y : y + h, x : x + w]
    small = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
        width=WIDTH, height=HEIGHT, interpolation="AREA"
    )
    return small.to_ndarray(format="rgb24").astype(np.float64)


HOME = (0, 0, 576, 432)
"""The camera's registered view: the upper-left 3/4 of vtest's picture."""
TURNED = (192, 144, 576, 432)
"""The camera turned: panned and tilted by a third of the picture (down-right)."""


def vtest_frames(crop: tuple[int, int, int, int] = HOME) -> list[Rgb]:
    """Every frame of vtest.avi, cropped and scaled."""
    with av.open(str(VTEST)) as container:
        return [scaled(f, crop) for f in container.decode(video=0)]


def cup_frames() -> list[Rgb]:
    """Every frame of cup.mp4 at 10 fps, scaled (4:3 already)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cup.mp4"
        with gzip.open(CUP) as src, path.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        with av.open(str(path)) as container:
            frames = list(container.decode(video=0))
    step = len(frames) / (float(frames[-1].time or 8.1) * FPS)
    return [scaled(frames[int(i * step)]) for i in range(int(len(frames) / step))]


def gain(image: Rgb, g: float) -> Rgb:
    """Exposure: scale the signal above black."""
    return BLACK + (image - BLACK) * g


class Noise:
    """Fresh sensor noise per frame, seeded."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: Rgb, sigma: float) -> Rgb:
        luma = self.rng.normal(0.0, sigma, image.shape[:2])[..., None]
        chroma = self.rng.normal(0.0, sigma * 0.5, image.shape)
        return image + luma + chroma


def cloth(seed: int = 3) -> Rgb:
    """A cloth (or palm) on the lens: a uniform beige fill, lens vignetting, soft folds."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    r2 = ((xx - WIDTH / 2) / (WIDTH / 2)) ** 2 + ((yy - HEIGHT / 2) / (HEIGHT / 2)) ** 2
    rng = np.random.default_rng(seed)
    folds = gaussian_blur(rng.normal(0.0, 1.0, (HEIGHT, WIDTH, 1)), 20.0)
    folds *= 5.0 / max(float(folds.std()), 1e-9)
    level = (1.0 - 0.35 * r2 / 2.0)[..., None] * np.array([150.0, 125.0, 105.0]) + folds
    return np.broadcast_to(level, (HEIGHT, WIDTH, 3)).copy()


def passer(image: Rgb, progress: float) -> Rgb:
    """A person walking past right in front of the lens: a dark, far-out-of-focus shape
    crossing the picture from left to right (``progress`` 0..1)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    cx = -0.4 * WIDTH + progress * 1.8 * WIDTH
    inside = ((xx - cx) / (0.3 * WIDTH)) ** 2 + ((yy - 0.6 * HEIGHT) / (0.7 * HEIGHT)) ** 2 <= 1
    mask = gaussian_blur(inside.astype(np.float64)[..., None], 12.0)
    shirt = np.array([45.0, 50.0, 60.0])
    return image * (1.0 - mask) + shirt * mask


def infrared(image: Rgb) -> Rgb:
    """Night vision: monochrome, near-infrared reflectance (vegetation and skin bright, paint
    darker), lower contrast, a little brighter overall."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    ir = 0.55 * r + 0.45 * g + 0.0 * b
    ir = 40.0 + 0.8 * ir
    return np.repeat(ir[..., None], 3, axis=2)


Tamper = Callable[[Rgb, float, int, Noise], Rgb]
"""(picture, t, frame index, noise) -> picture."""


def make(name: str, frames: list[Rgb], tamper: Tamper, seed: int) -> Path:
    """Encode one clip of ``DURATION_S`` from ``frames`` (looped if short) with ``tamper``."""
    path = OUT / f"{name}.mp4"
    noise = Noise(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {
            "crf": CRF,
            "preset": "medium",
            "g": str(GOP),
            "keyint_min": str(GOP),
            "sc_threshold": "0",
            "bf": "0",
            "threads": "1",
        }
        for i in range(int(DURATION_S * FPS)):
            t = i / FPS
            picture = tamper(frames[i % len(frames)], t, i, noise)
            rgb = np.clip(np.rint(picture), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def clips() -> Iterator[tuple[str, str, float | None, str, Callable[[], Path]]]:
    """(name, condition or "none", onset, what, builder) for every clip."""
    home = vtest_frames(HOME)
    turned = vtest_frames(TURNED)
    cup = cup_frames()
    cover = cloth()
    on = ONSET_S

    def live(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return img

    def covered(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return n(cover if t >= on else img, 1.5)

    def dark(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return n(gain(img, 0.05) if t >= on else img, 1.5)

    frozen_at = home[int(on * FPS) % len(home)]

    def frozen(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return frozen_at if t >= on else img

    def blurred(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return n(gaussian_blur(img, 2.0) if t >= on else img, 1.0)

    def moved(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return n(turned[i % len(turned)] if t >= on else img, 1.0)

    def passing(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        if on <= t < on + 2.0:
            img = passer(img, (t - on) / 2.0)
        return img

    def dimmed(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return n(gain(img, 0.6) if t >= on else img, 1.0)

    rng = np.random.default_rng(11)
    steps = rng.uniform(0.8, 1.2, int(DURATION_S) + 1)

    def flicker(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        if t < 20.0:
            return img
        g = steps[int(t)] * (1.0 + 0.12 * math.sin(2 * math.pi * t / 1.3))
        return n(gain(img, g), 1.0)

    night_scene = gain(home[0], 0.3)

    def night(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return n(night_scene, 3.0)

    cup_loop = cup + cup[::-1]

    def low_texture(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return n(cup_loop[i % len(cup_loop)], 1.5)

    def day_night(img: Rgb, t: float, i: int, n: Noise) -> Rgb:
        return n(infrared(img), 2.5) if t >= on else img

    yield (
        "good",
        "none",
        None,
        "the registered view, untouched",
        lambda: make("good", home, live, 1),
    )
    yield (
        "covered",
        "covered",
        on,
        "a beige cloth over the lens",
        lambda: make("covered", home, covered, 2),
    )
    yield "dark", "dark", on, "lights off: 5 % of the light", lambda: make("dark", home, dark, 3)
    yield (
        "frozen",
        "frozen",
        on,
        "the picture stops (the same frame repeats)",
        lambda: make("frozen", home, frozen, 4),
    )
    yield (
        "blurred",
        "blurred",
        on,
        "defocus: Gaussian sigma 2 px",
        lambda: make("blurred", home, blurred, 5),
    )
    yield (
        "moved",
        "moved",
        on,
        "camera panned and tilted by a third",
        lambda: make("moved", home, moved, 6),
    )
    yield (
        "passing",
        "none",
        on,
        "a person passes right in front of the lens for 2 s",
        (lambda: make("passing", home, passing, 7)),
    )
    yield "dimmed", "none", on, "lights dimmed by 40 %", lambda: make("dimmed", home, dimmed, 8)
    yield (
        "flicker",
        "none",
        20.0,
        "auto-exposure hunting, +-20 % steps and 1.3 s wobble",
        (lambda: make("flicker", home, flicker, 9)),
    )
    yield (
        "night",
        "none",
        None,
        "a still scene at 30 % light with sensor noise sigma 3",
        (lambda: make("night", home, night, 10)),
    )
    yield (
        "low_texture",
        "none",
        None,
        "a plain white wall, a hand with a cup (cup.mp4)",
        (lambda: make("low_texture", cup, low_texture, 12)),
    )
    yield (
        "day_night",
        "none",
        on,
        "switch to infrared night vision",
        lambda: make("day_night", home, day_night, 13),
    )


def main() -> None:
    """Build every clip and ``labels.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="names of clips to build")
    args = parser.parse_args()
    labels = []
    for name, condition, onset, what, build in clips():
        labels.append(
            {
                "clip": f"{name}.mp4",
                "condition": condition,
                "onset_s": onset,
                "what": what,
                "duration_s": DURATION_S,
            }
        )
        if not args.only or name in args.only:
            path = build()
            print(f"{path.name}: {path.stat().st_size // 1024} KiB")
    (OUT / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")


if __name__ == "__main__":
    main()
