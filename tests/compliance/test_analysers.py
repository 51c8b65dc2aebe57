"""Analysers on literal and synthetic frames: each measure moves for its fault and holds still
for the things that must not raise a flag (dimming, exposure, noise, overlays, infrared)."""

from __future__ import annotations

import time
from fractions import Fraction

import av
import numpy as np
import pytest

from kitchencam.compliance import analysers as a


@pytest.fixture
def scene(media):
    return media.Kitchen(seed=1).view(0)


@pytest.fixture
def camera(media):
    return media.Camera(seed=11, noise=1.5)


def test_to_working_integer_factor_is_an_area_average():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1280), dtype=np.uint8)
    working = a.to_working(frame)
    assert working.shape == (180, 320)
    assert working.dtype == np.float32
    expected = frame.reshape(180, 4, 320, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(working, expected, atol=1e-4)


@pytest.mark.parametrize("shape", [(576, 704), (480, 640), (1080, 1920), (120, 160), (181, 321)])
def test_to_working_any_size(shape):
    frame = np.full(shape, 77, dtype=np.uint8)
    frame[: shape[0] // 2] = 177
    working = a.to_working(frame)
    assert working.shape == (a.WORKING_HEIGHT, a.WORKING_WIDTH)
    assert working.min() >= 77 and working.max() <= 177
    assert abs(float(working.mean()) - float(frame.mean())) < 1.5


def test_to_working_rejects_colour_frames():
    with pytest.raises(ValueError, match="2-D"):
        a.to_working(np.zeros((360, 640, 3), dtype=np.uint8))


def test_luminance_of_uniform_and_dark_frames():
    grey = a.to_working(np.full((360, 640), 120, dtype=np.uint8))
    lum = a.measure_luminance(grey)
    assert lum.mean == pytest.approx(120)
    assert lum.std == pytest.approx(0)
    assert lum.p02 == lum.p98 == 120
    assert lum.dark_fraction == 0
    black = a.measure_luminance(a.to_working(np.full((360, 640), 16, dtype=np.uint8)))
    assert black.dark_fraction == 1
    assert black.p98 == 16


def test_luminance_percentiles_ignore_specks(scene, camera):
    frame = camera.shoot(scene, gain=0.03)
    frame[10:20, 10:30] = 230  # an exit sign: 0.09 % of the picture
    lum = a.measure_luminance(a.to_working(frame))
    assert lum.p98 < 30
    assert lum.dark_fraction > 0.98


def test_texture_collapses_when_covered(media, scene, camera):
    normal = a.measure_texture(a.to_working(camera.shoot(scene)))
    assert normal.edge_density > 0.05
    assert normal.detail > 0.05
    covers = {
        "cloth": camera.shoot(media.cloth()),
        "cloth at night": camera.shoot(media.cloth(level=50), noise=4),
        "hand": camera.shoot(media.hand(scene)),
        "translucent tape": camera.shoot(scene, blur=40, gain=1.3),
    }
    for name, frame in covers.items():
        t = a.measure_texture(a.to_working(frame))
        assert t.detail < 0.15 * normal.detail, name
        assert t.edge_density < 0.05 * normal.edge_density, name


def test_texture_is_invariant_to_dimming_and_exposure(scene, camera):
    normal = a.measure_texture(a.to_working(camera.shoot(scene)))
    for gain in (0.6, 0.8, 1.3):
        t = a.measure_texture(a.to_working(camera.shoot(scene, gain=gain, noise=2.0)))
        assert t.detail == pytest.approx(normal.detail, rel=0.1), gain
        assert t.edge_density == pytest.approx(normal.edge_density, rel=0.2), gain


def test_sensor_noise_alone_makes_no_edges():
    rng = np.random.default_rng(3)
    flat = np.clip(100 + rng.normal(0, 4, (360, 640)), 0, 255).astype(np.uint8)
    t = a.measure_texture(a.to_working(flat))
    assert t.edge_density < 0.001
    assert t.noise == pytest.approx(2.0, rel=0.35)  # sigma 4 halved by 2x2 averaging


def test_sharpness_falls_with_blur(scene, camera):
    ratios = [
        a.measure_sharpness(a.to_working(camera.shoot(scene, blur=b))).ratio
        for b in (0, 1, 2, 3, 6)
    ]
    assert ratios == sorted(ratios, reverse=True)
    assert ratios[0] > 0.55
    assert ratios[-1] < 0.32
    assert ratios[-1] >= a.SMOOTH_SHARPNESS_RATIO - 0.01


def test_sharpness_ignores_brightness_contrast_and_overlays(media, scene, camera):
    sharp = a.measure_sharpness(a.to_working(camera.shoot(scene))).ratio
    for kwargs in ({"gain": 0.6}, {"gain": 1.4}, {"veil": 0.3}):
        ratio = a.measure_sharpness(a.to_working(camera.shoot(scene, **kwargs))).ratio
        assert ratio == pytest.approx(sharp, rel=0.12), kwargs
    # A razor-sharp burnt-in clock on a defocused picture must not make it look sharp.
    blurred = camera.shoot(scene, blur=3).astype(np.float64)
    with_clock = np.clip(media.draw_clock(blurred, 45296), 0, 255).astype(np.uint8)
    ratio = a.measure_sharpness(a.to_working(with_clock)).ratio
    assert ratio < a.SMOOTH_SHARPNESS_RATIO + 0.3 * (sharp - a.SMOOTH_SHARPNESS_RATIO)


def test_sharpness_of_a_featureless_picture_is_smooth():
    s = a.measure_sharpness(a.to_working(np.full((360, 640), 90, dtype=np.uint8)))
    assert s.ratio == a.SMOOTH_SHARPNESS_RATIO
    assert s.textured_fraction == 0


def test_identical_frames_do_not_change(scene, camera):
    frame = a.to_working(camera.shoot(scene))
    change = a.measure_change(frame, frame, noise_floor=0.5)
    assert change.bulk == 0
    assert change.quiet == 0
    assert change.moving_fraction == 0
    assert change.informative_fraction > 0.9
    assert change.gain == pytest.approx(1)


def test_sensor_noise_is_change(scene, camera):
    first = a.to_working(camera.shoot(scene))
    second = a.to_working(camera.shoot(scene))
    change = a.measure_change(first, second, noise_floor=0.8)
    # sigma 1.5 at capture size is 0.75 after 2x2 averaging; |difference| averages ~0.85.
    assert 0.6 < change.quiet <= change.bulk < 1.2
    assert change.moving_fraction < 0.05


def test_burnt_in_clock_is_not_life(media, scene, camera):
    still = camera.shoot(scene).astype(np.float64)
    frames = [
        a.to_working(np.clip(media.draw_clock(still, s), 0, 255).astype(np.uint8))
        for s in (3599, 3600)  # 00:59:59 -> 01:00:00, every digit but one changes
    ]
    change = a.measure_change(frames[0], frames[1], noise_floor=0.8)
    assert change.bulk == 0
    assert 0 < change.moving_fraction < 0.15


def test_exposure_change_is_taken_out(scene, camera):
    first = a.to_working(camera.shoot(scene))
    brighter = a.to_working(camera.shoot(scene, gain=1.3))
    change = a.measure_change(first, brighter, noise_floor=0.8)
    assert change.gain == pytest.approx(1.3, rel=0.03)
    assert change.quiet < 1.5  # noise, not the 30 % exposure step (tens of grey levels)


def test_clipped_tiles_carry_no_evidence():
    frame = np.full((180, 320), 16.0, dtype=np.float32)
    frame[:, :40] = np.random.default_rng(1).normal(100, 3, (180, 40)).astype(np.float32)
    change = a.measure_change(frame, frame.copy(), noise_floor=0.5)
    assert change.informative_fraction == pytest.approx(2 / 16)


def _h264_keyframes(images: list[np.ndarray], qps: list[int]) -> list[np.ndarray]:
    """Encode each image as an H.264 IDR at its QP with PyAV (libx264) and decode it again."""
    out = []
    for image, qp in zip(images, qps, strict=True):
        h, w = image.shape
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuv420p"
        encoder.time_base = Fraction(1, 25)
        encoder.options = {"qp": str(qp), "preset": "veryfast", "tune": "zerolatency"}
        rgb = np.repeat(image[:, :, None], 3, axis=2)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = 0
        packets = [*encoder.encode(frame), *encoder.encode(None)]
        decoder = av.CodecContext.create("h264", "r")
        decoded = [f for p in packets for f in decoder.decode(p)]
        out.append(decoded[0].to_ndarray(format="gray"))
    return out


def test_h264_keyframes_of_a_live_still_scene_change_but_of_a_frozen_one_do_not(scene, camera):
    """Sensor noise survives H.264 I-frame coding; a frozen picture coded again does not change."""
    live = _h264_keyframes([camera.shoot(scene, noise=2.0) for _ in range(2)], [26, 26])
    frozen_image = camera.shoot(scene, noise=2.0)
    frozen = _h264_keyframes([frozen_image, frozen_image], [26, 26])
    live_change = a.measure_change(a.to_working(live[0]), a.to_working(live[1]), 0.5)
    frozen_change = a.measure_change(a.to_working(frozen[0]), a.to_working(frozen[1]), 0.5)
    assert live_change.bulk > 0.4
    assert frozen_change.bulk == 0
    sigs = [a.signature(a.to_working(f)) for f in frozen]
    assert a.repeats(sigs[1], sigs[:1])


def test_an_exactly_repeating_loop_is_recognised(media, scene, camera):
    loop = [camera.shoot(media.person(scene, x, 220, 45, 130)) for x in (150, 300, 450)]
    recent: list[a.Signature] = []
    seen = []
    for i in range(7):
        sig = a.signature(a.to_working(loop[i % 3]))
        seen.append(a.repeats(sig, recent))
        recent.append(sig)
    assert seen == [False, False, False, True, True, True, True]


def test_a_loop_with_a_live_clock_still_repeats(media, scene, camera):
    still = camera.shoot(scene).astype(np.float64)
    first = a.signature(a.to_working(np.clip(media.draw_clock(still, 10), 0, 255).astype(np.uint8)))
    again = a.signature(a.to_working(np.clip(media.draw_clock(still, 71), 0, 255).astype(np.uint8)))
    assert a.repeats(again, [first])


def test_live_frames_never_repeat(scene, camera):
    recent = [a.signature(a.to_working(camera.shoot(scene, noise=0.5))) for _ in range(5)]
    current = a.signature(a.to_working(camera.shoot(scene, noise=0.5)))
    assert not a.repeats(current, recent)


def test_similarity_to_the_reference_view(media, camera):
    kitchen = media.Kitchen(seed=1)
    ref = a.reference_view(a.to_working(camera.shoot(kitchen.view(0))))
    assert ref.structure > 0.05

    def score(frame: np.ndarray) -> float:
        return a.measure_similarity(a.to_working(frame), ref).score

    same = {
        "new noise": camera.shoot(kitchen.view(0)),
        "dimmed 40 %": camera.shoot(kitchen.view(0), gain=0.6, noise=2.5),
        "night, noisy": camera.shoot(kitchen.view(0), gain=0.35, noise=4),
        "nudged 20 px": camera.shoot(kitchen.view(20)),
        "tilted 3 degrees": camera.shoot(media.rotate(kitchen.view(0), 3)),
        "person in view": camera.shoot(media.person(kitchen.view(0), 400, 220, 45, 130)),
        "infrared": camera.shoot(
            media.Kitchen(seed=1, palette=1).view(0), gain=1.2, noise=3, blur=0.8
        ),
    }
    for name, frame in same.items():
        assert score(frame) > 0.55, name
    other = {
        "panned 300 px": camera.shoot(kitchen.view(300)),
        "panned to the far end": camera.shoot(kitchen.view(640)),
        "rotated 20 degrees": camera.shoot(media.rotate(kitchen.view(0), 20)),
        "another kitchen": camera.shoot(media.Kitchen(seed=2).view(0)),
        "a plain wall": camera.shoot(media.Kitchen(seed=1, low_texture=True).view(0)),
    }
    for name, frame in other.items():
        assert score(frame) < 0.25, name


def test_similarity_finds_small_shifts(media, camera):
    kitchen = media.Kitchen(seed=1)
    ref = a.reference_view(a.to_working(camera.shoot(kitchen.view(0))))
    shifted = a.measure_similarity(a.to_working(camera.shoot(kitchen.view(16))), ref)
    # The camera turned right by 16 capture px = 8 working px = 2 view px: content moved left.
    assert shifted.shift_x == -2
    assert shifted.shift_y == 0


def test_analyse_gives_every_measure(scene, camera):
    first = a.to_working(camera.shoot(scene))
    second = a.to_working(camera.shoot(scene))
    alone = a.analyse(second)
    assert alone.change is None
    assert alone.similarity is None
    assert not alone.repeated
    full = a.analyse(
        second,
        previous=first,
        noise_floor=0.8,
        reference=a.reference_view(first),
        recent=[a.signature(first)],
    )
    values = full.as_dict()
    assert values["change.repeated"] == 0
    assert {"luminance.p98", "texture.detail", "sharpness.ratio", "change.bulk"} <= set(values)
    assert values["similarity.score"] > 0.9
    assert all(isinstance(v, float) for v in values.values())


def test_analysis_is_cheap(scene, camera):
    """Budget: 0.005 cores per camera at one sample per 2 s is 10 ms per sample, decode
    included; the analysers take about 2 ms on this machine. Generous bound against CI noise."""
    frame = camera.shoot(scene)
    previous = a.to_working(camera.shoot(scene))
    ref = a.reference_view(previous)
    recent = [a.signature(previous)] * 30
    timings = []
    for _ in range(15):
        start = time.perf_counter()
        working = a.to_working(frame)
        a.analyse(working, previous=previous, noise_floor=0.5, reference=ref, recent=recent)
        timings.append(time.perf_counter() - start)
    assert sorted(timings)[len(timings) // 2] < 0.008
