"""The per-camera baseline: warm-up, slow learning, clamps, the noise floor, serialisation, and
that a view tampered with slowly is flagged rather than learned."""

from __future__ import annotations

import json

import pytest

from kitchencam.compliance import baseline as b
from kitchencam.compliance.analysers import NOISE_FLOOR_MIN
from kitchencam.compliance.states import (
    CameraMonitor,
    FrameSample,
    LeaseHeld,
    State,
)


def warmed(media, **values) -> b.Baseline:
    base = b.Baseline()
    for _ in range(b.WARMUP_SAMPLES):
        base = base.learn(media.measures(**values))
    return base


def test_a_fresh_baseline_is_not_ready():
    base = b.Baseline()
    assert not base.ready
    assert not base.similarity_ready
    assert base.anchor is None
    assert base.noise_floor == NOISE_FLOOR_MIN


def test_warm_up_averages_then_anchors(media):
    base = b.Baseline()
    densities = [0.08, 0.12, 0.10, 0.14, 0.06, 0.10, 0.12, 0.08, 0.10, 0.10]
    for i, density in enumerate(densities):
        assert not base.ready
        base = base.learn(media.measures(texture__edge_density=density))
        assert base.samples == i + 1
    assert base.ready
    assert base.edge_density == pytest.approx(sum(densities) / len(densities))
    assert base.anchor is not None
    assert base.anchor.edge_density == pytest.approx(base.edge_density)
    assert base.similarity_ready
    assert base.similarity == pytest.approx(0.9)


def test_after_warm_up_one_sample_moves_it_little(media):
    base = warmed(media)
    moved = base.learn(media.measures(texture__detail=0.2, sharpness__ratio=0.5))
    assert moved.detail == pytest.approx(0.11 + b.LEARN_RATE * (0.2 - 0.11))
    assert moved.sharpness == pytest.approx(0.68 + b.LEARN_RATE * (0.5 - 0.68))


def test_scene_values_stay_near_their_anchor(media):
    base = warmed(media)
    for _ in range(3000):
        base = base.learn(
            media.measures(texture__edge_density=0.01, texture__detail=0.01, sharpness__ratio=0.26)
        )
    assert base.edge_density == pytest.approx(0.12 * b.ANCHOR_LOW)
    assert base.detail == pytest.approx(0.11 * b.ANCHOR_LOW)
    assert base.sharpness == pytest.approx(0.25 + (0.68 - 0.25) * b.SHARPNESS_LOW)
    for _ in range(3000):
        base = base.learn(media.measures(texture__edge_density=0.9, sharpness__ratio=3.0))
    assert base.edge_density == pytest.approx(0.12 * b.ANCHOR_HIGH)
    assert base.sharpness == pytest.approx(0.25 + (0.68 - 0.25) * b.SHARPNESS_HIGH)


def test_each_part_learns_only_when_allowed(media):
    base = warmed(media)
    m = media.measures(texture__detail=0.3, similarity__score=0.2, change__quiet=3.0)
    assert base.learn(m, scene=False, similarity=False, noise=False) == base
    only_noise = base.learn(m, scene=False, similarity=False)
    assert only_noise.detail == base.detail
    assert only_noise.similarity == base.similarity
    assert only_noise.noise_floor > base.noise_floor
    only_scene = base.learn(m, similarity=False, noise=False)
    assert only_scene.detail > base.detail
    assert only_scene.noise_floor == base.noise_floor


def test_missing_parts_are_not_learned(media):
    base = warmed(media)
    m = media.measures(change=None, similarity=None)
    learned = base.learn(m)
    assert learned.noise_floor == base.noise_floor
    assert learned.similarity == base.similarity


def test_noise_floor_falls_fast_and_rises_slowly(media):
    base = b.Baseline()
    for _ in range(b.WARMUP_SAMPLES):
        base = base.learn(media.measures(change__quiet=2.0))
    assert base.noise_floor == pytest.approx(2.0)
    quieter = base
    for _ in range(15):  # half a minute of a quieter daytime sensor
        quieter = quieter.learn(media.measures(change__quiet=0.5))
    assert quieter.noise_floor < 0.6
    noisier = quieter
    for _ in range(15):
        noisier = noisier.learn(media.measures(change__quiet=2.0))
    assert noisier.noise_floor < 1.2
    for quiet, expected in ((0.0, NOISE_FLOOR_MIN), (100.0, b.NOISE_FLOOR_MAX)):
        clamped = base
        for _ in range(500):
            clamped = clamped.learn(media.measures(change__quiet=quiet))
        assert clamped.noise_floor == pytest.approx(expected)


def test_a_new_reference_forgets_the_typical_similarity(media):
    base = warmed(media).without_similarity()
    assert not base.similarity_ready
    assert base.similarity_anchor is None
    assert base.ready  # the scene values stay


def test_round_trips_through_json(media):
    base = warmed(media).learn(media.measures(change__quiet=1.3))
    data = json.loads(json.dumps(base.to_dict()))
    assert b.Baseline.from_dict(data) == base
    assert b.Baseline.from_dict(b.Baseline().to_dict()) == b.Baseline()


def test_another_version_gives_a_fresh_baseline(media):
    data = warmed(media).to_dict()
    data["version"] = b.BASELINE_VERSION + 1
    assert b.Baseline.from_dict(data) == b.Baseline()
    assert b.Baseline.from_dict({}) == b.Baseline()


def test_a_malformed_dict_is_an_error(media):
    data = warmed(media).to_dict()
    del data["detail"]
    with pytest.raises(ValueError, match="malformed baseline"):
        b.Baseline.from_dict(data)
    data = warmed(media).to_dict()
    data["anchor"] = {"detail": "x"}
    with pytest.raises(ValueError, match="malformed baseline"):
        b.Baseline.from_dict(data)


def _monitor(media) -> CameraMonitor:
    monitor = CameraMonitor()
    monitor.observe(LeaseHeld(0.0))
    for i in range(1, 31):
        monitor.observe(FrameSample(2.0 * i, media.measures(), 2.0 * (i - 1)))
    assert monitor.baseline.ready
    return monitor


def test_slow_smearing_is_flagged_not_learned(media):
    """Grease builds up over four hours: the sharpness ratio sinks from 0.68 to 0.27.
    The baseline follows only within its clamp, so ``blurred`` is raised, and early."""
    monitor = _monitor(media)
    samples = 4 * 3600 // 2
    raised_at = None
    for i in range(samples):
        t = 62.0 + 2.0 * i
        ratio = 0.68 - (0.68 - 0.27) * i / samples
        result = monitor.observe(FrameSample(t, media.measures(sharpness__ratio=ratio), t - 2))
        if result.transitions:
            assert result.transitions[0].to_state == State.BLURRED
            raised_at = ratio
            break
    assert raised_at is not None
    assert raised_at > 0.35  # a third of the way from sharp to smooth, at the latest
    anchor = monitor.baseline.anchor
    assert anchor is not None
    assert monitor.baseline.sharpness >= 0.25 + (anchor.sharpness - 0.25) * b.SHARPNESS_LOW


def test_slow_covering_is_flagged_not_learned(media):
    """A translucent film creeps over the lens: detail and edges fade over two hours."""
    monitor = _monitor(media)
    samples = 2 * 3600 // 2
    raised = None
    for i in range(samples):
        t = 62.0 + 2.0 * i
        k = 1.0 - 0.97 * i / samples
        m = media.measures(texture__detail=0.11 * k, texture__edge_density=0.12 * k)
        result = monitor.observe(FrameSample(t, m, t - 2))
        if result.transitions:
            raised = (result.transitions[0].to_state, k)
            break
    assert raised is not None
    state, k = raised
    assert state == State.COVERED
    assert k > 0.15


def test_nothing_is_learned_while_a_condition_is_pending(media):
    monitor = _monitor(media)
    before = monitor.baseline
    covered = media.measures(texture__detail=0.005, texture__edge_density=0.0, change__quiet=2.0)
    result = monitor.observe(FrameSample(62.0, covered, 60.0))
    assert not result.learning
    assert monitor.baseline == before
    # Good again, but the pending run has just been cut: learning resumes at once.
    result = monitor.observe(FrameSample(64.0, media.measures(), 62.0))
    assert result.learning.scene


def test_natural_drift_within_the_clamps_is_learned(media):
    """A kitchen gets busier through the morning: 30 % more edges and detail, no flag."""
    monitor = _monitor(media)
    for i in range(1800):
        t = 62.0 + 2.0 * i
        k = 1.0 + 0.3 * min(1.0, i / 900)
        m = media.measures(texture__detail=0.11 * k, texture__edge_density=0.12 * k)
        assert not monitor.observe(FrameSample(t, m, t - 2)).transitions
    assert monitor.baseline.detail == pytest.approx(0.11 * 1.3, rel=0.05)
