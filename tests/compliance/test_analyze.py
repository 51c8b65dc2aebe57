"""``kitchencam analyze`` as a user runs it: a real process on a labelled clip and on a real
RTSP camera, one JSON line per sample; camera URLs go through the address policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.compliance.support import CLIPS, LABELS
from tests.support.camera import RtspCamera

TIMEOUT_S = 120


def analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KITCHENCAM_")}
    return subprocess.run(
        [sys.executable, "-m", "kitchencam", "analyze", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=base | (env or {}),
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )


def test_file_gives_one_json_line_per_sample_and_finds_the_condition() -> None:
    done = analyze(str(CLIPS / "dark.mp4"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 28  # 56 s, one keyframe every 2 s
    assert [line["t"] for line in lines[:3]] == [0.0, 2.0, 4.0]
    assert all(set(line) >= {"t", "state", "measures"} for line in lines)
    assert "luminance.p98" in lines[0]["measures"]
    onset = LABELS["dark"]["onset_s"]
    first_dark = next(line["t"] for line in lines if line["state"] == "dark")
    assert onset < first_dark <= onset + 10.0
    assert {line["state"] for line in lines if line["t"] < onset} == {"ok"}


def test_interval_and_max_seconds() -> None:
    done = analyze(str(CLIPS / "good.mp4"), "--interval", "4", "--max-seconds", "20")
    assert done.returncode == 0, done.stderr
    times = [json.loads(line)["t"] for line in done.stdout.splitlines()]
    assert times == [0.0, 4.0, 8.0, 12.0, 16.0, 20.0]


def test_camera_url_refused_by_the_address_policy() -> None:
    done = analyze("rtsp://127.0.0.1:8554/stream")
    assert done.returncode != 0
    assert "loopback" in done.stderr and "KITCHENCAM_ALLOW_NETWORKS" in done.stderr
    assert analyze("http://example.com/x.mp4").returncode != 0


def test_camera_url_allowed_by_the_operator() -> None:
    with RtspCamera(width=320, height=240, fps=10, gop=20, source=CLIPS / "good.mp4") as cam:
        done = analyze(
            cam.url, "--max-seconds", "6", env={"KITCHENCAM_ALLOW_NETWORKS": "127.0.0.0/8"}
        )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert 2 <= len(lines) <= 4 and lines[0]["state"] == "ok"
