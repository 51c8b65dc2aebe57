"""Per-camera baseline: what this camera's picture normally measures, learned while it is ``ok``.

Kitchens differ (a busy line with steel and tiles, a dim prep room, a white wall), so
``covered``, ``blurred``, ``frozen`` and ``moved`` are judged relative to the camera's own
baseline. The baseline must not slowly learn a tampered view as normal, so:

* it learns only from samples the state machine calls good, and not at all while any condition
  is pending or raised (``states.Learning`` says which parts may learn from a sample);
* after a short warm-up it moves slowly (an exponential moving average, rate
  ``LEARN_RATE`` per good sample, about 100 samples or 3 to 4 minutes at one sample every 2 s);
* the scene values are clamped to a band around their *anchor*, the values learned during the
  warm-up (right after the reference view was approved), so that no sequence of "good"
  samples can drag the baseline further than ``ANCHOR_LOW``..``ANCHOR_HIGH`` from the approved
  view: a lens smeared a little more every day eventually falls out of the good band and
  raises ``blurred``.

The noise floor is different: sensor noise legitimately changes several-fold between day and
night, and a floor that is too high would make a live picture look frozen. It follows drops
quickly and rises slowly, within absolute limits, and it may learn from samples whose
``frozen`` grade is merely grey.

Pure values, no I/O; serialisable to and from a plain dict (JSON in Redis).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from kitchencam.compliance.analysers import (
    NOISE_FLOOR_MIN,
    SMOOTH_SHARPNESS_RATIO,
    FrameMeasures,
)

BASELINE_VERSION: Final = 1
"""Bumped when the meaning of a field changes; an older dict is discarded, not misread."""

WARMUP_SAMPLES: Final = 10
"""Good samples averaged (equal weights) before the baseline is ready and anchored: 20 s at one
sample every 2 s, enough to average over people moving about."""

LEARN_RATE: Final = 0.01
"""Weight of one good sample once warmed up (time constant ~100 samples)."""

ANCHOR_LOW: Final = 0.7
ANCHOR_HIGH: Final = 1.5
"""Edge density and detail stay within this factor of their anchor. The ``covered`` bad
thresholds are 0.25-0.3 of the baseline, so even a baseline dragged to its lower clamp flags
a picture that lost about 80 % of the approved view's structure. (Both measures are
normalised by brightness: night and infrared pictures keep 0.65-1 of the day values.)"""

SHARPNESS_LOW: Final = 0.75
SHARPNESS_HIGH: Final = 1.33
"""The sharpness ratio's span above a smooth picture (ratio - 0.25) stays within this factor
of the anchor's span: an infrared night picture (about 0.7 of the day span) still grades
good, and a lens smeared a little more every day is flagged ``blurred`` once it is below
0.26 of the approved view's span, however slowly it got there."""

SIMILARITY_MARGIN: Final = 0.2
"""The typical similarity to the reference may drift at most this far below its anchor."""

NOISE_RATE_DOWN: Final = 0.2
NOISE_RATE_UP: Final = 0.03
"""The noise floor follows a quieter sensor within a few samples (a too-high floor makes a
live picture look frozen) and a noisier one slowly (a too-low floor only makes ``frozen``
less sensitive)."""

NOISE_FLOOR_MAX: Final = 8.0
"""Largest noise floor (mean absolute tile change, working-frame grey levels) ever learned."""

DEFAULT_NOISE_FLOOR: Final = NOISE_FLOOR_MIN
"""Assumed before any noise was measured: the least sensitive setting for ``frozen``."""


@dataclass(frozen=True, slots=True)
class Anchor:
    """Scene values at the end of the warm-up, the centre of the clamp band."""

    edge_density: float
    detail: float
    sharpness: float


@dataclass(frozen=True, slots=True)
class Baseline:
    """What one camera's picture normally measures (see the module docstring)."""

    samples: int = 0
    """Good samples the scene values learned from (capped at ``WARMUP_SAMPLES`` + 1)."""
    luminance: float = 0.0
    edge_density: float = 0.0
    detail: float = 0.0
    sharpness: float = 0.0
    """``Sharpness.ratio`` of the normal picture."""
    textured_fraction: float = 0.0
    anchor: Anchor | None = None
    similarity: float = 0.0
    """Typical ``Similarity.score`` against the approved reference while ``ok``."""
    similarity_samples: int = 0
    similarity_anchor: float | None = None
    noise_floor: float = DEFAULT_NOISE_FLOOR
    """Typical ``Change.quiet`` of consecutive live samples (grey levels)."""
    noise_samples: int = 0

    @property
    def ready(self) -> bool:
        """Whether the scene values are warmed up and may be used as a reference."""
        return self.samples >= WARMUP_SAMPLES

    @property
    def similarity_ready(self) -> bool:
        """Whether the typical similarity to the reference is known."""
        return self.similarity_samples >= WARMUP_SAMPLES

    def learn(
        self,
        measures: FrameMeasures,
        *,
        scene: bool = True,
        similarity: bool = True,
        noise: bool = True,
    ) -> Baseline:
        """Return the baseline after one good sample; each part learns only if allowed."""
        out = self
        if scene:
            out = out._learn_scene(measures)
        if similarity and measures.similarity is not None:
            out = out._learn_similarity(measures.similarity.score)
        if noise and measures.change is not None:
            out = out._learn_noise(measures.change.quiet)
        return out

    def without_similarity(self) -> Baseline:
        """Forget the typical similarity (a new reference view was approved)."""
        return replace(self, similarity=0.0, similarity_samples=0, similarity_anchor=None)

    def _learn_scene(self, m: FrameMeasures) -> Baseline:
        values = {
            "luminance": m.luminance.mean,
            "edge_density": m.texture.edge_density,
            "detail": m.texture.detail,
            "sharpness": m.sharpness.ratio,
            "textured_fraction": m.sharpness.textured_fraction,
        }
        n = self.samples
        rate = 1.0 / (n + 1) if n < WARMUP_SAMPLES else LEARN_RATE
        new = {k: getattr(self, k) + rate * (v - getattr(self, k)) for k, v in values.items()}
        anchor = self.anchor
        if anchor is None and n + 1 >= WARMUP_SAMPLES:
            anchor = Anchor(new["edge_density"], new["detail"], new["sharpness"])
        elif anchor is not None:
            for name in ("edge_density", "detail"):
                centre = getattr(anchor, name)
                new[name] = min(max(new[name], centre * ANCHOR_LOW), centre * ANCHOR_HIGH)
            span = anchor.sharpness - SMOOTH_SHARPNESS_RATIO
            low = SMOOTH_SHARPNESS_RATIO + span * SHARPNESS_LOW
            high = SMOOTH_SHARPNESS_RATIO + span * SHARPNESS_HIGH
            new["sharpness"] = min(max(new["sharpness"], low), high)
        return replace(self, samples=min(n + 1, WARMUP_SAMPLES + 1), anchor=anchor, **new)

    def _learn_similarity(self, score: float) -> Baseline:
        n = self.similarity_samples
        rate = 1.0 / (n + 1) if n < WARMUP_SAMPLES else LEARN_RATE
        value = self.similarity + rate * (score - self.similarity)
        anchor = self.similarity_anchor
        if anchor is None and n + 1 >= WARMUP_SAMPLES:
            anchor = value
        elif anchor is not None:
            value = min(max(value, anchor - SIMILARITY_MARGIN), 1.0)
        return replace(
            self,
            similarity=value,
            similarity_samples=min(n + 1, WARMUP_SAMPLES + 1),
            similarity_anchor=anchor,
        )

    def _learn_noise(self, quiet: float) -> Baseline:
        n = self.noise_samples
        if n < WARMUP_SAMPLES:
            # Warm-up: a plain running mean from the first sample on.
            value = quiet if n == 0 else self.noise_floor + (quiet - self.noise_floor) / (n + 1)
        else:
            rate = NOISE_RATE_DOWN if quiet < self.noise_floor else NOISE_RATE_UP
            value = self.noise_floor + rate * (quiet - self.noise_floor)
        value = min(max(value, NOISE_FLOOR_MIN), NOISE_FLOOR_MAX)
        return replace(self, noise_floor=value, noise_samples=min(n + 1, WARMUP_SAMPLES + 1))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, with a version."""
        out = asdict(self)
        out["version"] = BASELINE_VERSION
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        """Rebuild from :meth:`to_dict` output; a dict of another version gives a fresh baseline.

        Raises ``ValueError`` on a malformed dict of the current version.
        """
        if data.get("version") != BASELINE_VERSION:
            return cls()
        try:
            a = data.get("anchor")
            anchor = (
                None
                if a is None
                else Anchor(float(a["edge_density"]), float(a["detail"]), float(a["sharpness"]))
            )
            similarity_anchor = data.get("similarity_anchor")
            return cls(
                samples=int(data["samples"]),
                luminance=float(data["luminance"]),
                edge_density=float(data["edge_density"]),
                detail=float(data["detail"]),
                sharpness=float(data["sharpness"]),
                textured_fraction=float(data["textured_fraction"]),
                anchor=anchor,
                similarity=float(data["similarity"]),
                similarity_samples=int(data["similarity_samples"]),
                similarity_anchor=None if similarity_anchor is None else float(similarity_anchor),
                noise_floor=float(data["noise_floor"]),
                noise_samples=int(data["noise_samples"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed baseline: {err}") from err
