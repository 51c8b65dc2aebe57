"""Image analysers for the compliance checker: pure functions over one grayscale frame.

Nothing here does I/O or keeps state; every function runs on whichever thread calls it (the
checker calls them off the event loop, one sampled keyframe at a time). A decoded luma plane of
any size goes through :func:`to_working` once; every other analyser takes that fixed-size
``float32`` working frame and returns a small frozen dataclass of measured values. Deciding what
the values mean (thresholds, the camera's baseline, hysteresis) is ``states``' job, not this
module's.

Measures are chosen to be invariant to what must not raise a flag: luminance-normalised edge
and detail measures (lights dimmed, auto-exposure), a fine-to-coarse gradient energy ratio
(contrast-free sharpness), tile-wise change judged against the camera's own noise (a still
scene with sensor noise is alive, a burnt-in clock is a few tiles), and a polarity-free
gradient-orientation correlation with the reference view (day/night infrared switch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import numpy.typing as npt

Gray = npt.NDArray[np.uint8]
"""A decoded luma plane, ``uint8`` H x W (``VideoFrame.to_ndarray(format="gray")``)."""

Working = npt.NDArray[np.float32]
"""A working frame: area-averaged luma, ``float32`` ``WORKING_HEIGHT`` x ``WORKING_WIDTH``."""

WORKING_WIDTH: Final = 320
WORKING_HEIGHT: Final = 180
"""Working size: 4x area averaging of 720p keeps defocus measurable (a 4 px blur at 720p is
1 working pixel) while averaging sensor and compression noise down, and keeps every analyser
well under a millisecond."""

TILE_COLUMNS: Final = 16
TILE_ROWS: Final = 9
"""Change and repeat detection work on a 16 x 9 grid of tiles (20 x 20 px at 320 x 180): a
burnt-in clock or camera name covers a handful of tiles, so percentiles over tiles discount it
without a mask."""

DETAIL_COLUMNS: Final = 32
DETAIL_ROWS: Final = 18
"""Detail (mid-scale structure) is measured on a 32 x 18 grid of tile means (10 x 10 px)."""

BLACK_LEVEL: Final = 16.0
"""Video black in limited-range luma. Contrast is taken relative to ``mean - BLACK_LEVEL`` so
that dimming the lights (which scales the signal above black) leaves normalised measures alone.
Full-range cameras only make dark scenes look a little less contrasted, the safe direction."""

MIN_SIGNAL: Final = 8.0
"""Smallest signal above black used as a divisor, so near-black frames do not explode ratios."""

DARK_PIXEL_LEVEL: Final = 40
"""A pixel below this luma (about 11 % of the limited range above black) shows nothing."""

EDGE_CONTRAST: Final = 0.12
"""An edge pixel has a central difference of at least 12 % of the signal above black."""

EDGE_NOISE_SIGMAS: Final = 6.0
"""...and at least 6 noise sigmas, so sensor noise alone (about 1e-4 of pixels) makes no edges."""

FLAT_TILE_STD: Final = 0.05
"""A tile whose luma standard deviation is below this is flat (clipped black or white): it
cannot show change, so it is left out of change statistics unless it changed."""

CHANGE_BULK_PERCENTILE: Final = 80.0
"""The change of the "bulk" of the picture: 80 % of informative tiles changed at most this much.
Up to 20 % of the tiles (overlays, clocks, logos) may change without making a frozen picture
look alive."""

CHANGE_QUIET_PERCENTILE: Final = 25.0
"""The quietest quarter of the tiles shows sensor noise even in a busy kitchen: the per-sample
estimate of the camera's noise floor."""

MOTION_NOISE_FACTOR: Final = 3.0
"""A tile moved (a person, a flame) when its change exceeds three noise floors."""

NOISE_FLOOR_MIN: Final = 0.1
"""Smallest noise floor in working-frame grey levels (mean absolute tile change) ever assumed."""

REPEAT_TOLERANCE: Final = 1e-6
"""Tile means equal within this are bit-identical picture content: one full-resolution pixel
differing by one level changes a tile mean by about 1.6e-4 at 720p."""

REPEAT_FRACTION: Final = 0.8
"""A sample repeats an earlier one when at least 80 % of its informative tiles are identical."""

VIEW_FACTOR: Final = 4
"""The reference view is compared at 1/4 of the working size (80 x 45), lightly smoothed."""

VIEW_MAX_SHIFT: Final = 3
"""Best match over shifts of up to 3 view pixels (about 50 px at 720p): vibration or a nudge
is not a moved camera."""

VIEW_EDGE_KNEE: Final = 0.02
VIEW_NOISE_KNEE: Final = 1.0
"""Knee of the edge weight in the orientation field: gradients (per 2 view pixels) well above
2 % of the signal, and above the working frame's noise sigma, count as a full edge."""

_MAD_TO_SIGMA: Final = 1.0 / (0.6745 * 6.0)
"""Median absolute response of the 3x3 noise filter (norm 6) to Gaussian noise, to sigma."""


# --- working frame -----------------------------------------------------------------------


def to_working(frame: Gray, width: int = WORKING_WIDTH, height: int = WORKING_HEIGHT) -> Working:
    """Area-average a luma plane of any size to the ``float32`` working frame.

    Integer factors (720p, 1080p, 360p to 320 x 180) take a fast path (about 0.15 ms for
    720p); other sizes are binned exactly; planes smaller than the working size are sampled.
    """
    if frame.ndim != 2:
        raise ValueError(f"expected a 2-D luma plane, got shape {frame.shape}")
    h, w = frame.shape
    if h < 2 or w < 2:
        raise ValueError(f"frame too small: {w}x{h}")
    if h % height == 0 and w % width == 0:
        return _integer_downscale(frame, h // height, w // width)
    out = _resample_axis(frame.astype(np.float32), height, axis=0)
    return _resample_axis(out, width, axis=1)


def _integer_downscale(frame: Gray, fy: int, fx: int) -> Working:
    """Sum strided slices: far faster than ``reshape().mean()`` for uint8 input."""
    rows = frame[0::fy].astype(np.uint32)
    for i in range(1, fy):
        rows += frame[i::fy]
    out = rows[:, 0::fx].astype(np.float32)
    for j in range(1, fx):
        out += rows[:, j::fx]
    out *= np.float32(1.0 / (fy * fx))
    return out


def _resample_axis(a: Working, target: int, axis: int) -> Working:
    """Area-average (or, when upsampling, sample) one axis to ``target`` elements."""
    n = a.shape[axis]
    if n == target:
        return a
    if n < target:
        index = (np.arange(target) * n) // target
        sampled: Working = np.take(a, index, axis=axis)
        return sampled
    edges = (np.arange(target) * n) // target
    sums = np.add.reduceat(a, edges, axis=axis)
    counts = np.diff(np.append(edges, n)).astype(np.float32)
    shape = [1, 1]
    shape[axis] = target
    return (sums / counts.reshape(shape)).astype(np.float32)


def _signal(mean: float) -> float:
    """Signal above black used to normalise contrast measures."""
    return max(mean - BLACK_LEVEL, MIN_SIGNAL)


def _tiles(a: Working, rows: int, columns: int) -> Working:
    """Reshape to (rows, tile_h, columns, tile_w), cropping any remainder at the far edges."""
    th, tw = a.shape[0] // rows, a.shape[1] // columns
    return a[: rows * th, : columns * tw].reshape(rows, th, columns, tw)


def _tile_means(a: Working, rows: int, columns: int) -> Working:
    """Mean of each tile of a rows x columns grid."""
    means: Working = _tiles(a, rows, columns).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    return means


def estimate_noise(frame: Working) -> float:
    """Sensor noise sigma (grey levels) of a working frame: Immerkaer's filter, median, so
    edges barely count."""
    f = frame
    r = (
        f[:-2, :-2]
        - 2 * f[:-2, 1:-1]
        + f[:-2, 2:]
        - 2 * f[1:-1, :-2]
        + 4 * f[1:-1, 1:-1]
        - 2 * f[1:-1, 2:]
        + f[2:, :-2]
        - 2 * f[2:, 1:-1]
        + f[2:, 2:]
    )
    flat = np.abs(r[::2, ::2]).ravel()
    k = flat.size // 2
    return float(np.partition(flat, k)[k]) * _MAD_TO_SIGMA


# --- dark --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Luminance:
    """Luminance level and spread of a frame (for ``dark``)."""

    mean: float
    std: float
    p02: float
    """2nd percentile: the black point of the picture."""
    p98: float
    """98th percentile: the brightest part of the picture that is more than a speck."""
    dark_fraction: float
    """Fraction of pixels below ``DARK_PIXEL_LEVEL``."""


def measure_luminance(frame: Working) -> Luminance:
    """Mean, spread, 2nd/98th percentiles and the dark fraction, from a 256-bin histogram."""
    levels = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    hist = np.bincount(levels.ravel(), minlength=256)
    cdf = np.cumsum(hist) / levels.size
    return Luminance(
        mean=float(frame.mean(dtype=np.float64)),
        std=float(frame.std(dtype=np.float64)),
        p02=float(np.searchsorted(cdf, 0.02)),
        p98=float(np.searchsorted(cdf, 0.98)),
        dark_fraction=float(cdf[DARK_PIXEL_LEVEL - 1]),
    )


# --- covered -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Texture:
    """Edges and structure of a frame, normalised by its signal level (for ``covered``)."""

    edge_density: float
    """Fraction of pixels on an edge (contrast- and noise-relative threshold)."""
    detail: float
    """RMS of 10 x 10 px tile means minus their 3 x 3 neighbourhood mean, over the signal: the
    mid-scale structure that a blurred scene keeps and a covered lens (a smooth ramp or
    vignette at most) loses."""
    contrast: float
    """Luma standard deviation over the signal: global non-uniformity (vignetting counts)."""
    noise: float
    """Sensor noise sigma estimated from this frame (grey levels)."""


def measure_texture(frame: Working, noise: float | None = None) -> Texture:
    """Edge density, mid-scale detail and global contrast, relative to the frame's own signal."""
    mean = float(frame.mean(dtype=np.float64))
    signal = _signal(mean)
    sigma = estimate_noise(frame) if noise is None else noise
    gx = frame[1:-1, 2:] - frame[1:-1, :-2]
    gy = frame[2:, 1:-1] - frame[:-2, 1:-1]
    threshold = max(EDGE_CONTRAST * signal, EDGE_NOISE_SIGMAS * sigma)
    edges = np.count_nonzero(gx * gx + gy * gy > threshold * threshold) / gx.size
    grid = _tile_means(frame, DETAIL_ROWS, DETAIL_COLUMNS)
    neighbourhood = sum(
        grid[1 + dy : grid.shape[0] - 1 + dy, 1 + dx : grid.shape[1] - 1 + dx]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    residual = grid[1:-1, 1:-1] - neighbourhood / 9.0
    detail = math.sqrt(float(np.mean(residual * residual))) / signal
    contrast = float(frame.std(dtype=np.float64)) / signal
    return Texture(edge_density=edges, detail=detail, contrast=contrast, noise=sigma)


# --- blurred -----------------------------------------------------------------------------

SMOOTH_SHARPNESS_RATIO: Final = 0.25
"""The fine-to-coarse ratio of an infinitely smooth picture (gradients scale with distance)."""


@dataclass(frozen=True, slots=True)
class Sharpness:
    """High-frequency energy of a frame relative to its coarse-scale energy (for ``blurred``)."""

    ratio: float
    """Mean squared neighbour difference at working scale over the same at half scale, summed
    over textured tiles without the 15 % of tiles with the highest ratio (a razor-sharp
    burnt-in clock), with half the estimated sensor noise taken out: about 0.7 for a sharp
    camera picture, 0.25 for a smooth one, up to 4 for pure noise. Brightness and contrast
    cancel out, so dimming or steam's veil alone does not move it."""
    textured_fraction: float
    """Fraction of tiles with enough coarse structure above noise to judge sharpness on."""
    energy: float
    """Half-scale gradient energy over the signal squared (whole frame)."""


TEXTURE_NOISE_FACTOR: Final = 4.0
"""A textured tile's half-scale energy exceeds four times what sensor noise alone gives..."""

TEXTURE_MIN: Final = 5e-4
"""...and 5e-4 of the signal squared (a 2 % local contrast)."""

SHARPNESS_TRIM: Final = 0.15
"""Fraction of textured tiles with the highest ratio left out (overlays, text, specular glints)."""

NOISE_COMPENSATION: Final = 0.5
"""Fraction of the estimated noise energy subtracted before the ratio: noise adds 4 sigma^2 to
the fine and sigma^2 to the coarse energy and would otherwise hide blur at night; only half,
because the estimate runs high on textured pictures and over-subtraction would fake blur."""


def measure_sharpness(frame: Working, noise: float | None = None) -> Sharpness:
    """Fine-to-coarse gradient energy ratio over textured tiles, trimmed and noise-compensated."""
    sigma = estimate_noise(frame) if noise is None else noise
    fine = _tile_gradient_energy(frame, TILE_ROWS, TILE_COLUMNS)
    coarse = _tile_gradient_energy(_half(frame), TILE_ROWS, TILE_COLUMNS)
    signal = _signal(float(frame.mean(dtype=np.float64)))
    energy = float(coarse.mean()) / (signal * signal)
    variance = sigma * sigma
    textured = coarse > max(TEXTURE_NOISE_FACTOR * variance, TEXTURE_MIN * signal * signal)
    count = int(np.count_nonzero(textured))
    if count == 0:
        return Sharpness(ratio=SMOOTH_SHARPNESS_RATIO, textured_fraction=0.0, energy=energy)
    f = np.maximum(fine[textured] - NOISE_COMPENSATION * 4.0 * variance, 0.0)
    c = coarse[textured] - NOISE_COMPENSATION * variance
    keep = np.argsort(f / c)[: max(1, int(count * (1.0 - SHARPNESS_TRIM)))]
    return Sharpness(
        ratio=float(f[keep].sum() / c[keep].sum()),
        textured_fraction=count / textured.size,
        energy=energy,
    )


def _half(frame: Working) -> Working:
    """2 x 2 area average (odd remainders cropped)."""
    h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
    f = frame[:h, :w]
    out: Working = (f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2]) * np.float32(
        0.25
    )
    return out


def _tile_gradient_energy(a: Working, rows: int, columns: int) -> npt.NDArray[np.float64]:
    """Per tile, mean squared horizontal plus vertical neighbour difference."""
    dx = np.zeros_like(a)
    dy = np.zeros_like(a)
    dx[:, :-1] = a[:, 1:] - a[:, :-1]
    dy[:-1, :] = a[1:, :] - a[:-1, :]
    energy = dx * dx + dy * dy
    out: npt.NDArray[np.float64] = _tiles(energy, rows, columns).mean(axis=(1, 3), dtype=np.float64)
    return out


# --- frozen ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """Tile-wise change between two consecutive samples (for ``frozen``)."""

    bulk: float
    """80th percentile of informative tiles' mean absolute change (grey levels): what the
    bulk of the picture did, whatever a clock overlay or a few moving tiles did."""
    quiet: float
    """25th percentile: the quietest tiles, i.e. the sensor noise of a live camera."""
    moving_fraction: float
    """Fraction of informative tiles that changed by more than three noise floors."""
    informative_fraction: float
    """Fraction of tiles that can show change at all (not clipped flat in both samples)."""
    gain: float
    """Exposure change (signal above black, current over previous) taken out before comparing,
    so auto-exposure or a dimmer does not count as change, nor inflate the noise floor."""


def measure_change(previous: Working, current: Working, noise_floor: float) -> Change:
    """Compare two consecutive working frames tile by tile against the camera's noise floor."""
    if previous.shape != current.shape:
        raise ValueError(f"frame shapes differ: {previous.shape} and {current.shape}")
    before = _tile_means(previous, TILE_ROWS, TILE_COLUMNS) - BLACK_LEVEL
    after = _tile_means(current, TILE_ROWS, TILE_COLUMNS) - BLACK_LEVEL
    lit = before > MIN_SIGNAL
    gain = float(np.median(after[lit] / before[lit])) if np.any(lit) else 1.0
    if not 0.25 <= gain <= 4.0:
        gain = 1.0  # not an exposure change: lights off, a cover; compare as is
    reference = previous
    if abs(gain - 1.0) > 1e-3:
        reference = (previous - BLACK_LEVEL) * np.float32(gain) + np.float32(BLACK_LEVEL)
    diff = _tiles(np.abs(current - reference), TILE_ROWS, TILE_COLUMNS).mean(axis=(1, 3))
    std = _tiles(current, TILE_ROWS, TILE_COLUMNS).std(axis=(1, 3))
    informative = (std > FLAT_TILE_STD) | (diff > 0)
    count = int(np.count_nonzero(informative))
    if count == 0:
        return Change(0.0, 0.0, 0.0, 0.0, gain)
    values = diff[informative]
    bulk, quiet = np.percentile(values, [CHANGE_BULK_PERCENTILE, CHANGE_QUIET_PERCENTILE])
    motion = MOTION_NOISE_FACTOR * max(noise_floor, NOISE_FLOOR_MIN)
    return Change(
        bulk=float(bulk),
        quiet=float(quiet),
        moving_fraction=float(np.count_nonzero(values > motion)) / count,
        informative_fraction=count / informative.size,
        gain=gain,
    )


@dataclass(frozen=True, eq=False, slots=True)
class Signature:
    """A frame's tile means, kept for a minute to recognise an exactly repeating picture."""

    means: npt.NDArray[np.float64]
    flat: npt.NDArray[np.bool_]


def signature(frame: Working) -> Signature:
    """Tile means (float64, so identical content gives identical values) and flat-tile mask."""
    tiles = _tiles(frame, TILE_ROWS, TILE_COLUMNS)
    return Signature(
        means=tiles.mean(axis=(1, 3), dtype=np.float64),
        flat=tiles.std(axis=(1, 3)) <= FLAT_TILE_STD,
    )


def repeats(current: Signature, recent: Sequence[Signature]) -> bool:
    """Whether ``current`` shows the very same picture content as one of ``recent``.

    Live sensors never reproduce 400 pixels exactly; a frozen encoder, a replayed recording or
    a stuck buffer cycling through a few frames does. Up to 20 % of informative tiles may
    differ (a live clock overlay over a replayed loop).
    """
    informative = ~current.flat
    count = int(np.count_nonzero(informative))
    if count == 0:
        return False
    for earlier in recent:
        same = np.abs(current.means - earlier.means) <= REPEAT_TOLERANCE
        if np.count_nonzero(same & informative) >= REPEAT_FRACTION * count:
            return True
    return False


# --- moved -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, slots=True)
class ReferenceView:
    """The approved reference view reduced to a zero-mean gradient-orientation field."""

    field: npt.NDArray[np.complex128]
    structure: float
    """RMS of the weighted field, 0-1: about 0.7 for a kitchen, 0.25 for a tiled wall, near 0
    for a featureless picture: how much there is to match on."""


@dataclass(frozen=True, slots=True)
class Similarity:
    """Similarity of a frame to the reference view (for ``moved``)."""

    score: float
    """Best normalised correlation of doubled-angle gradient orientations over small shifts:
    about 0.8-1 for the registered view, around 0 for another scene. Edge polarity, brightness
    and contrast do not matter, so infrared night vision still matches."""
    shift_x: int
    shift_y: int
    """How far the picture content moved from the reference at the best match, in view pixels
    (one view pixel is 4 working pixels; negative x: content moved left, the camera right)."""
    reference_structure: float
    """The reference view's ``structure``: below about 0.05 there is nothing to match on."""


def reference_view(frame: Working) -> ReferenceView:
    """Reduce an approved reference frame to what :func:`measure_similarity` compares with."""
    field = _orientation_field(frame, None)
    structure = math.sqrt(float(np.mean(np.abs(field) ** 2)))
    return ReferenceView(field=field, structure=structure)


def measure_similarity(
    frame: Working, reference: ReferenceView, noise: float | None = None
) -> Similarity:
    """Best zero-mean orientation correlation with the reference over shifts of up to 3 px."""
    current = _orientation_field(frame, noise)
    if current.shape != reference.field.shape:
        raise ValueError("frame and reference view differ in size")
    s = VIEW_MAX_SHIFT
    h, w = current.shape
    shape = (h + s, w + s)
    # Cross-correlation for every shift at once; zero padding by the maximum shift keeps the
    # circular FFT from wrapping the picture onto itself.
    corr = np.fft.ifft2(np.fft.fft2(current, shape) * np.conj(np.fft.fft2(reference.field, shape)))
    a2 = _integral(np.abs(current) ** 2)
    b2 = _integral(np.abs(reference.field) ** 2)
    # corr[dy, dx] = sum over y, x of current[y + dy, x + dx] * conj(ref[y, x]); normalise
    # each shift by the energies of the two overlapping rectangles.
    dy = np.arange(-s, s + 1)[:, None]
    dx = np.arange(-s, s + 1)[None, :]
    y0, y1 = np.maximum(0, -dy), np.minimum(h, h - dy)
    x0, x1 = np.maximum(0, -dx), np.minimum(w, w - dx)
    ref_energy = b2[y1, x1] - b2[y0, x1] - b2[y1, x0] + b2[y0, x0]
    cur_energy = (
        a2[y1 + dy, x1 + dx] - a2[y0 + dy, x1 + dx] - a2[y1 + dy, x0 + dx] + a2[y0 + dy, x0 + dx]
    )
    energy = ref_energy * cur_energy
    scores = np.full(energy.shape, -1.0)
    np.divide(
        corr[dy % shape[0], dx % shape[1]].real,
        np.sqrt(np.maximum(energy, 1e-300)),
        out=scores,
        where=energy > 0,
    )
    iy, ix = np.unravel_index(int(np.argmax(scores)), scores.shape)
    best, best_dx, best_dy = float(scores[iy, ix]), int(ix) - s, int(iy) - s
    return Similarity(
        score=best, shift_x=best_dx, shift_y=best_dy, reference_structure=reference.structure
    )


def _orientation_field(frame: Working, noise: float | None) -> npt.NDArray[np.complex128]:
    """Zero-mean doubled-angle gradient field of the smoothed 1/4-size view.

    Squaring the complex gradient doubles its angle, so an edge and its inverse (a dark pan on
    a light wall by day, light in infrared) point the same way. Each vector is then weighted
    by a soft threshold of its magnitude, m^2 / (m^2 + knee^2): an edge counts about the same
    whatever its contrast (a razor-sharp white-on-black clock cannot outweigh a plain kitchen
    wall), while gradients at the level of sensor noise hardly count at all.
    """
    h, w = frame.shape[0] // VIEW_FACTOR, frame.shape[1] // VIEW_FACTOR
    small = (
        frame[: h * VIEW_FACTOR, : w * VIEW_FACTOR]
        .reshape(h, VIEW_FACTOR, w, VIEW_FACTOR)
        .mean(axis=(1, 3), dtype=np.float64)
    )
    smooth = small.copy()
    smooth[1:-1, :] = 0.25 * small[:-2, :] + 0.5 * small[1:-1, :] + 0.25 * small[2:, :]
    smooth2 = smooth.copy()
    smooth2[:, 1:-1] = 0.25 * smooth[:, :-2] + 0.5 * smooth[:, 1:-1] + 0.25 * smooth[:, 2:]
    gx = smooth2[1:-1, 2:] - smooth2[1:-1, :-2]
    gy = smooth2[2:, 1:-1] - smooth2[:-2, 1:-1]
    g = gx + 1j * gy
    m2 = gx * gx + gy * gy
    sigma = estimate_noise(frame) if noise is None else noise
    knee = max(VIEW_EDGE_KNEE * _signal(float(small.mean())), VIEW_NOISE_KNEE * sigma)
    field: npt.NDArray[np.complex128] = g * g / (m2 + knee * knee)
    field -= field.mean()
    return field


def _integral(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Summed-area table with a zero first row and column."""
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    out[1:, 1:] = a.cumsum(axis=0).cumsum(axis=1)
    return out


# --- all together ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameMeasures:
    """Everything measured on one sampled frame; ``None`` where there was nothing to compare."""

    luminance: Luminance
    texture: Texture
    sharpness: Sharpness
    change: Change | None
    """Against the previous sample; ``None`` for the first sample after a gap."""
    repeated: bool
    """The picture content repeats one of the recent samples exactly (see :func:`repeats`)."""
    similarity: Similarity | None
    """Against the reference view; ``None`` while the camera has no approved reference."""

    def as_dict(self) -> dict[str, float]:
        """Flat name -> value mapping, for events and the ``analyze`` command's JSON lines."""
        out: dict[str, float] = {}
        for prefix, part in (
            ("luminance", self.luminance),
            ("texture", self.texture),
            ("sharpness", self.sharpness),
            ("change", self.change),
            ("similarity", self.similarity),
        ):
            if part is None:
                continue
            for field in fields(part):
                out[f"{prefix}.{field.name}"] = round(float(getattr(part, field.name)), 6)
        out["change.repeated"] = 1.0 if self.repeated else 0.0
        return out


def analyse(
    frame: Working,
    *,
    previous: Working | None = None,
    noise_floor: float = NOISE_FLOOR_MIN,
    reference: ReferenceView | None = None,
    recent: Sequence[Signature] = (),
    current_signature: Signature | None = None,
) -> FrameMeasures:
    """Run every analyser on one working frame.

    ``previous`` is the previous sample's working frame (``None`` after a gap), ``noise_floor``
    the camera's learned noise floor, ``reference`` its approved view, and ``recent`` the
    signatures of its recent samples (pass ``current_signature`` if already computed).
    """
    noise = estimate_noise(frame)
    change = None if previous is None else measure_change(previous, frame, noise_floor)
    sig = signature(frame) if current_signature is None else current_signature
    return FrameMeasures(
        luminance=measure_luminance(frame),
        texture=measure_texture(frame, noise),
        sharpness=measure_sharpness(frame, noise),
        change=change,
        repeated=repeats(sig, recent),
        similarity=None if reference is None else measure_similarity(frame, reference, noise),
    )
