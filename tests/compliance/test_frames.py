"""PyAV at the edge: keyframes decoded alone (as the sampler feeds them), the working plane,
JPEG evidence and its hash, and errors translated at the boundary."""

from __future__ import annotations

import hashlib

import pytest

from kitchencam.compliance.frames import (
    FrameError,
    KeyframeDecoder,
    analysis_plane,
    decode_jpeg,
    encode_jpeg,
)
from tests.compliance.support import access_units


def test_keyframes_alone_decode_to_working_planes() -> None:
    units, info = access_units("good", keyframes_only=True)
    decoder = KeyframeDecoder(info.codec)
    for unit in units[:5]:
        frame = decoder.decode(unit.au.data)
        assert (frame.width, frame.height) == (320, 240)
        plane = analysis_plane(frame)
        assert plane.shape == (180, 320) and plane.dtype.name == "uint8"
        assert 60 < float(plane.mean()) < 200


def test_jpeg_evidence_round_trip_and_hash() -> None:
    units, info = access_units("good", keyframes_only=True)
    frame = KeyframeDecoder(info.codec).decode(units[0].au.data)
    snap = encode_jpeg(frame)
    assert (
        snap.data.startswith(b"\xff\xd8") and snap.sha256 == hashlib.sha256(snap.data).hexdigest()
    )
    assert 5_000 < len(snap.data) < 60_000
    back = decode_jpeg(snap.data)
    assert (back.width, back.height) == (320, 240)
    small = encode_jpeg(frame, max_width=160)
    assert (decode_jpeg(small.data).width, decode_jpeg(small.data).height) == (160, 120)


def test_errors_are_ours() -> None:
    with pytest.raises(FrameError, match="cannot analyse"):
        KeyframeDecoder("mjpeg2000")
    with pytest.raises(FrameError):
        KeyframeDecoder("h264").decode(b"\x00\x00\x00\x01\x65garbage")
    with pytest.raises(FrameError):
        decode_jpeg(b"not a jpeg")
