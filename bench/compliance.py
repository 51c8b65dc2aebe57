"""Compliance benchmark: detection delays, false alarms, and analysis CPU per camera.

    .venv/bin/python bench/compliance.py

1. Every labelled clip of ``bench/clips`` (see its README) goes through the checker's own
   sampling, analysers and state machine (``kitchencam.compliance.analyze.samples``, the code
   the relay's sampler runs, in media time). For each condition: the delay from onset to the
   state being raised. For the hard negatives: every state other than ``ok`` entered is a false
   alarm, reported per hour of negative footage.
2. ``offline``: the good clip until 30 s, then the camera stops sending; the relay's ingest
   reports the read timeout (5 s) with the time of the last packet, and the sampler ticks every
   second (``kitchencam.compliance.sampler.connection_evidence``): delay from the last packet.
3. CPU: the good clip scaled to 1280 x 720 (and 640 x 360, and its own 320 x 240), encoded
   with a 2 s GOP, handed over access unit by access unit: a baseline pass that only looks at
   each unit (what ingest costs us anyway) against a pass that samples one keyframe per 2 s,
   decodes it (``skip_frame="NONKEY"``), scales it and runs the monitor, in the same process.
   CPU-seconds (``time.process_time``) per second of media is the cost in cores per camera.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kitchencam.compliance.analyze import samples  # noqa: E402
from kitchencam.compliance.frames import KeyframeDecoder  # noqa: E402
from kitchencam.compliance.pipeline import CameraAnalysis  # noqa: E402
from kitchencam.compliance.sampler import INTERVAL_TOLERANCE, connection_evidence  # noqa: E402
from kitchencam.compliance.states import Tick  # noqa: E402
from kitchencam.relay.media import IngestState, IngestStatus, Reason  # noqa: E402

CLIPS = ROOT / "bench" / "clips"
TARGETS_S = {
    "offline": 10.0,
    "covered": 10.0,
    "dark": 10.0,
    "frozen": 20.0,
    "blurred": 20.0,
    "moved": 20.0,
}
INTERVAL_S = 2.0
READ_TIMEOUT_S = 5.0
CPU_REPEATS = 3


def detection() -> tuple[list[tuple[str, float | None, float]], float, int, list[str]]:
    """Per condition (name, delay, target); hours of negatives, false alarms, details."""
    labels = json.loads((CLIPS / "labels.json").read_text())
    delays: list[tuple[str, float | None, float]] = []
    alarms, seconds, details = 0, 0.0, []
    for label in labels:
        with av.open(str(CLIPS / label["clip"])) as container:
            run = list(samples(container, interval_s=INTERVAL_S))
        entered = [(s.t, tr["to"]) for s in run for tr in s.transitions]
        if label["condition"] == "none":
            seconds += label["duration_s"]
            bad = [(t, to) for t, to in entered if to != "ok"]
            alarms += len(bad)
            details.append(f"{label['clip']}: {bad or 'nothing raised'}")
            continue
        condition = label["condition"]
        raised = [t for t, to in entered if to == condition]
        delay = raised[0] - label["onset_s"] if raised else None
        delays.append((condition, delay, TARGETS_S[condition]))
        others = [(t, to) for t, to in entered if to not in ("ok", condition)]
        if others:
            details.append(f"{label['clip']}: also {others}")
    delays.insert(0, ("offline", offline_delay(), TARGETS_S["offline"]))
    return delays, seconds / 3600.0, alarms, details


def offline_delay(stop_s: float = 30.0) -> float | None:
    """Seconds from the last packet to ``offline`` with the relay's timeouts."""
    analysis = CameraAnalysis()
    analysis.resume(0.0)
    with av.open(str(CLIPS / "good.mp4")) as container:
        stream = container.streams.video[0]
        decoder = KeyframeDecoder("h264", stream.codec_context.extradata)
        last_sample = last_packet = None
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            t = float(packet.pts * packet.time_base)
            if t > stop_s:
                break
            last_packet = t
            if packet.is_keyframe and (
                last_sample is None or t - last_sample >= INTERVAL_S * INTERVAL_TOLERANCE
            ):
                last_sample = t
                analysis.sample(t, decoder.decode(bytes(packet)))
    assert last_packet is not None
    report = IngestStatus(
        IngestState.RETRYING,
        last_packet + READ_TIMEOUT_S,
        Reason.TIMEOUT,
        last_packet=last_packet,
    )
    evidence = connection_evidence(report)
    assert evidence is not None
    steps = [analysis.observe(evidence)]
    tick = last_packet + 1.0
    while tick < last_packet + 60.0:
        if tick > report.time:
            steps.append(analysis.observe(Tick(tick)))
        tick += 1.0
    for step in steps:
        for tr in step.step.transitions:
            if tr.to_state.value == "offline":
                return tr.t - last_packet
    return None


def encode(width: int, height: int, seconds: float = 40.0) -> list[tuple[float, bytes, bool]]:
    """The good clip at ``width`` x ``height`` as Annex-B access units (2 s GOP)."""
    out: list[tuple[float, bytes, bool]] = []
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 10)
    encoder.framerate = Fraction(10, 1)
    encoder.options = {
        "g": "20",
        "keyint_min": "20",
        "sc_threshold": "0",
        "bf": "0",
        "preset": "veryfast",
        "crf": "23",
        "annexb": "1",
        "repeat-headers": "1",
    }
    with av.open(str(CLIPS / "good.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= seconds * 10:
                break
            big = frame.reformat(width=width, height=height, format="yuv420p")
            big.pts = i
            for packet in encoder.encode(big):
                out.append((len(out) / 10, bytes(packet), packet.is_keyframe))
    for packet in encoder.encode(None):
        out.append((len(out) / 10, bytes(packet), packet.is_keyframe))
    return out


def cpu(units: list[tuple[float, bytes, bool]]) -> tuple[float, float, int]:
    """CPU-seconds of a baseline pass and of the analysed pass, and the samples taken."""
    media_s = units[-1][0] - units[0][0]

    def baseline() -> float:
        start = time.process_time()
        seen = 0
        for _t, data, key in units:
            seen += len(data) if key else 1
        return time.process_time() - start

    def analysed() -> tuple[float, int]:
        analysis = CameraAnalysis()
        analysis.resume(0.0)
        decoder = KeyframeDecoder("h264")
        start = time.process_time()
        last: float | None = None
        count = 0
        for t, data, key in units:
            if not key or (last is not None and t - last < INTERVAL_S * INTERVAL_TOLERANCE):
                continue
            last = t
            analysis.sample(t, decoder.decode(data))
            count += 1
        return time.process_time() - start, count

    base = min(baseline() for _ in range(CPU_REPEATS))
    runs = [analysed() for _ in range(CPU_REPEATS)]
    spent = min(r[0] for r in runs)
    return base / media_s, (spent - base) / media_s, runs[0][1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    """Run everything and print the tables (markdown)."""
    print(f"# compliance benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"machine: {platform.machine()}, {_cpu_model()}, "
        f"Python {platform.python_version()}, PyAV {av.__version__}"
    )
    delays, hours, alarms, details = detection()
    print("\n| condition | detection delay (s) | target (s) | met |")
    print("|---|---|---|---|")
    for condition, delay, target in delays:
        shown = "not raised" if delay is None else f"{delay:.1f}"
        met = delay is not None and delay <= target
        print(f"| {condition} | {shown} | {target:.0f} | {'yes' if met else 'NO'} |")
    print(
        f"\nhard negatives: {alarms} false alarms in {hours * 60:.1f} min of footage "
        f"({alarms / hours:.1f} per hour)"
    )
    for line in details:
        print(f"- {line}")
    print("\n| picture | baseline (cores) | analysis (cores per camera) | samples |")
    print("|---|---|---|---|")
    for width, height in ((1280, 720), (640, 360), (320, 240)):
        base, analysis, count = cpu(encode(width, height))
        print(f"| {width} x {height} | {base:.5f} | {analysis:.5f} | {count} |")


if __name__ == "__main__":
    main()
