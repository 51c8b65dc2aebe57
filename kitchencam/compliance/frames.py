"""PyAV at the edge of the compliance checker: keyframes in, analysis planes and JPEGs out.

Everything here blocks (decoding, scaling, JPEG encoding) and runs on an analysis worker
thread, never on the event loop. PyAV's exceptions are translated into :class:`FrameError`
at this boundary.
"""

from __future__ import annotations

import base64
import fractions
import hashlib
from dataclasses import dataclass
from typing import Any, Final

import av
import numpy as np

from kitchencam.compliance.analysers import WORKING_HEIGHT, WORKING_WIDTH, Gray

JPEG_MAX_WIDTH: Final = 640
"""Evidence snapshots are at most 640 px wide: enough to see a kitchen, ~25-35 KB each."""

JPEG_QUALITY: Final = 6
"""MJPEG quantiser (2 best .. 31 worst); 6 keeps text on labels readable at about 30 KB."""

CODECS: Final = {"h264": "h264", "avc": "h264", "h265": "hevc", "hevc": "hevc"}
"""Stream codec names (as ``StreamInfo.codec`` gives them) to FFmpeg decoder names."""


class FrameError(Exception):
    """A keyframe or an image could not be decoded or encoded (the message says why)."""


@dataclass(frozen=True, slots=True)
class JpegSnapshot:
    """A JPEG and its SHA-256 (hex), the name it is stored and shown under."""

    data: bytes
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> JpegSnapshot:
        """Wrap JPEG bytes with their hash."""
        return cls(data, hashlib.sha256(data).hexdigest())

    def b64(self) -> str:
        """The JPEG as base64 text (every KitchenCam Redis client decodes answers as text)."""
        return base64.b64encode(self.data).decode("ascii")


class KeyframeDecoder:
    """Decodes keyframes only (``skip_frame="NONKEY"``), one at a time, on one thread.

    Keyframes of H.264 carry their SPS/PPS in front, so a decoder fed nothing but keyframes
    decodes each of them; H.265 needs the stream's extradata. Not thread-safe: one decoder
    per camera, used by whichever worker analyses that camera (one at a time).
    """

    def __init__(self, codec: str, extradata: bytes | None = None) -> None:
        name = CODECS.get(codec.lower())
        if name is None:
            raise FrameError(f"cannot analyse {codec} video")
        self._name = name
        self._extradata = extradata
        self._context: Any = None

    def _open(self) -> Any:
        try:
            context = av.CodecContext.create(self._name, "r")
            context.skip_frame = "NONKEY"
            context.thread_count = 1  # one keyframe at a time: threads only add latency
            if self._extradata:
                context.extradata = self._extradata
        except (av.FFmpegError, ValueError) as err:
            raise FrameError(f"cannot open a {self._name} decoder: {err}") from err
        return context

    def decode(self, data: bytes) -> av.VideoFrame:
        """The picture of one keyframe access unit (Annex-B)."""
        if self._context is None:
            self._context = self._open()
        try:
            frames = self._context.decode(av.Packet(data))
            if not frames:
                # A decoder with reordering delay holds the picture back: drain it, and start
                # a fresh decoder next time (a drained decoder accepts no more input).
                frames = self._context.decode(None)
                self._context = None
        except (av.FFmpegError, ValueError) as err:
            self._context = None
            raise FrameError(f"keyframe did not decode: {err}") from err
        if not frames:
            raise FrameError("keyframe gave no picture")
        frame: av.VideoFrame = frames[-1]
        return frame


def analysis_plane(frame: av.VideoFrame) -> Gray:
    """The frame's luma area-averaged to the analysers' working size (about 0.1 ms at 720p)."""
    small = frame.reformat(
        width=WORKING_WIDTH, height=WORKING_HEIGHT, format="gray", interpolation="AREA"
    )
    plane: Gray = np.asarray(small.to_ndarray(), dtype=np.uint8)
    return plane


def encode_jpeg(frame: av.VideoFrame, max_width: int = JPEG_MAX_WIDTH) -> JpegSnapshot:
    """The frame as a colour JPEG at most ``max_width`` wide (2-4 ms at 640 x 360)."""
    width, height = frame.width, frame.height
    if width > max_width:
        height = max(2, round(height * max_width / width / 2) * 2)
        width = max_width
    width -= width % 2
    height -= height % 2
    try:
        encoder: Any = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuvj420p"
        encoder.time_base = fractions.Fraction(1, 25)
        encoder.qmin = encoder.qmax = JPEG_QUALITY
        picture = frame.reformat(width=width, height=height, format="yuvj420p")
        picture.pts = None
        data = b"".join(bytes(p) for p in encoder.encode(picture))
        data += b"".join(bytes(p) for p in encoder.encode(None))
    except (av.FFmpegError, ValueError) as err:
        raise FrameError(f"cannot encode a JPEG: {err}") from err
    return JpegSnapshot.of(data)


def jpeg_from_gray(plane: Gray) -> JpegSnapshot:
    """A grey JPEG of a luma plane (for ``analyze`` and tests that have no decoded frame)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format="gray")
    return encode_jpeg(frame)


def decode_jpeg(data: bytes) -> av.VideoFrame:
    """Decode a JPEG (a stored reference view) to a frame."""
    try:
        decoder: Any = av.CodecContext.create("mjpeg", "r")
        frames = decoder.decode(av.Packet(data)) or decoder.decode(None)
    except (av.FFmpegError, ValueError) as err:
        raise FrameError(f"not a decodable JPEG: {err}") from err
    if not frames:
        raise FrameError("the JPEG gave no picture")
    frame: av.VideoFrame = frames[-1]
    return frame
