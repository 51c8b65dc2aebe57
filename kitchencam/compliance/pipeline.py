"""One camera's analysis: sampled pictures through the monitor, with the evidence around them.

:class:`CameraAnalysis` wraps a :class:`~kitchencam.compliance.states.CameraMonitor` with what
the shells need and the pure core does not keep: the approved reference view (approved
automatically once the picture is good, or loaded from storage), the last good picture, the
JPEG evidence of each transition, a preview now and then, and when the monitor's state is
worth saving. The relay's sampler and ``kitchencam analyze`` both use it, so the offline tool
judges exactly as the checker does.

Not thread-safe: call it from one thread at a time (an analysis worker). No I/O but PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import av

from kitchencam.compliance.analysers import FrameMeasures
from kitchencam.compliance.baseline import Baseline
from kitchencam.compliance.frames import JpegSnapshot, analysis_plane, decode_jpeg, encode_jpeg
from kitchencam.compliance.states import (
    CameraMonitor,
    Config,
    Evidence,
    FrameSample,
    LeaseHeld,
    Memory,
    State,
    Step,
)

PREVIEW_INTERVAL_S: Final = 600.0
"""A preview JPEG (for the portal, and for re-approving the reference) every 10 minutes..."""

PREVIEW_WIDTH: Final = 320
"""...320 px wide (about 8 KB): 100,000 cameras write about 1.5 MB/s of previews to Redis."""

BASELINE_SAVE_INTERVAL_S: Final = 60.0
"""The baseline learns a little from every good sample; it is saved at most once a minute
(the memory, which decides states, is saved on every change)."""

_CLOCK_FIELDS: Final = ("last_t", "last_sample_t", "last_media_t")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one piece of evidence did, and the evidence to keep with it."""

    step: Step
    snapshot: JpegSnapshot | None = None
    """The deciding picture of a transition (``None`` when no picture decided it)."""
    last_good: JpegSnapshot | None = None
    """The last picture the camera was fully good in, with a transition."""
    approved: JpegSnapshot | None = None
    """A reference view approved automatically on this sample."""
    preview: JpegSnapshot | None = None
    save: bool = False
    """The monitor's memory changed (or the baseline is due): save it."""
    measures: FrameMeasures | None = None
    """What the analysers measured on the sampled picture."""


def memory_signature(memory: Memory) -> dict[str, Any]:
    """The memory without its clocks: what changes only when the machine's mind changes."""
    data = memory.to_dict()
    for name in _CLOCK_FIELDS:
        data.pop(name)
    return data


class _Monitor(CameraMonitor):
    """The core's monitor, remembering the measures of the latest sample (for reports)."""

    last_measures: FrameMeasures | None = None

    def observe(self, evidence: Evidence) -> Step:
        if isinstance(evidence, FrameSample):
            self.last_measures = evidence.measures
        return super().observe(evidence)


class CameraAnalysis:
    """The monitor of one camera plus its reference view, last good picture and snapshots."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        memory: Memory | None = None,
        baseline: Baseline | None = None,
        auto_reference: bool = True,
    ) -> None:
        self.monitor = _Monitor(config, baseline=baseline, memory=memory)
        self.has_reference = False
        self.auto_reference = auto_reference
        self._last_good: av.VideoFrame | None = None
        self._last_good_jpeg: JpegSnapshot | None = None
        self._preview_t: float | None = None
        self._saved = memory_signature(self.monitor.memory)
        self._baseline_saved_t: float | None = None

    @property
    def state(self) -> State:
        """The monitor's state."""
        return self.monitor.state

    def resume(self, t: float) -> Step:
        """Start (or continue after another relay) under this relay: the core stops the
        clocks of whatever was pending, keeps raised flags, and keeps an ``ok`` verdict only
        across a short hand-over (``Config.resume_gap_s``); a camera not yet checked stays
        ``unmonitored`` until a good picture is."""
        return self.monitor.observe(LeaseHeld(t))

    def use_reference(self, jpeg: bytes) -> None:
        """Compare with this stored reference view from now on (keeps the learned typical
        similarity when it is the same view continuing after a restart)."""
        plane = analysis_plane(decode_jpeg(jpeg))
        baseline = self.monitor.baseline
        self.monitor.approve_reference(plane)
        self.monitor.baseline = baseline
        self.has_reference = True

    def approve(self, jpeg: bytes) -> None:
        """A new reference view was approved (by a person): forget the typical similarity."""
        self.monitor.approve_reference(analysis_plane(decode_jpeg(jpeg)))
        self.has_reference = True

    def sample(self, t: float, frame: av.VideoFrame) -> Outcome:
        """Analyse one sampled picture taken at ``t``."""
        plane = analysis_plane(frame)
        result = self.monitor.sample(t, plane)
        approved = None
        good = (
            result.verdict is not None
            and result.memory.state is State.OK
            and not result.memory.pending()
            and result.learning.scene
        )
        if good:
            self._last_good, self._last_good_jpeg = frame, None
            if self.auto_reference and not self.has_reference and self.monitor.baseline.ready:
                approved = encode_jpeg(frame)
                self.monitor.approve_reference(plane)
                self.has_reference = True
        snapshot = last_good = None
        if result.transitions:
            snapshot = approved or encode_jpeg(frame)
            last_good = self.last_good()
        preview = None
        if self._preview_t is None or t - self._preview_t >= PREVIEW_INTERVAL_S:
            preview = encode_jpeg(frame, PREVIEW_WIDTH)
            self._preview_t = t
        measures = self.monitor.last_measures
        return Outcome(result, snapshot, last_good, approved, preview, self._due(t), measures)

    def observe(self, evidence: Evidence) -> Outcome:
        """Take in evidence without a picture (connection news, heartbeats, ticks)."""
        result = self.monitor.observe(evidence)
        last_good = self.last_good() if result.transitions else None
        return Outcome(result, None, last_good, save=self._due(evidence.t))

    def last_good(self) -> JpegSnapshot | None:
        """The JPEG of the last good picture (encoded once, when first needed)."""
        if self._last_good_jpeg is None and self._last_good is not None:
            self._last_good_jpeg = encode_jpeg(self._last_good)
        return self._last_good_jpeg

    def _due(self, t: float) -> bool:
        signature = memory_signature(self.monitor.memory)
        changed = signature != self._saved
        baseline_due = (
            self._baseline_saved_t is None or t - self._baseline_saved_t >= BASELINE_SAVE_INTERVAL_S
        )
        if changed or baseline_due:
            self._saved = signature
            self._baseline_saved_t = t
            return True
        return False
