"""The RTSP test camera behaves like a real camera, as seen by PyAV/FFmpeg clients."""

from __future__ import annotations

import itertools
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import numpy as np
import pytest

from tests.support.camera import RtspCamera

OPEN_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 5.0
# av.open returns the frames it read while probing all at once, within milliseconds.
LIVE_MARGIN_S = 0.1
SHORT_GOP = 10  # frames: keeps av.open (which waits for a keyframe) quick
PARAMETER_SETS = {"h264": (7, 8), "h265": (32, 33, 34)}  # (VPS,) SPS, PPS in stream order
NAL_TYPE = {"h264": lambda b: b & 0x1F, "h265": lambda b: (b >> 1) & 0x3F}


def open_stream(url: str, read_timeout_s: float = READ_TIMEOUT_S) -> av.container.InputContainer:
    """Open an RTSP URL the way KitchenCam does: TCP, open and read timeouts."""
    return av.open(url, options={"rtsp_transport": "tcp"}, timeout=(OPEN_TIMEOUT_S, read_timeout_s))


def nal_types(annexb: bytes, codec: str) -> list[int]:
    """NAL unit types in an Annex-B buffer, in order (emulation prevention rules out
    false start codes)."""
    types = []
    pos = annexb.find(b"\x00\x00\x01")
    while 0 <= pos < len(annexb) - 3:
        types.append(NAL_TYPE[codec](annexb[pos + 3]))
        pos = annexb.find(b"\x00\x00\x01", pos + 3)
    return types


def nal_payload(annexb: bytes, codec: str, wanted: int) -> bytes:
    """The first NAL unit of type ``wanted`` (header byte included, up to the next start code)."""
    for start in (i + 3 for i in range(len(annexb)) if annexb.startswith(b"\x00\x00\x01", i)):
        if NAL_TYPE[codec](annexb[start]) == wanted:
            end = annexb.find(b"\x00\x00\x01", start)
            return annexb[start : end if end >= 0 else None]
    raise AssertionError(f"no NAL unit of type {wanted}")


def pps_uses_cabac(pps: bytes) -> bool:
    """entropy_coding_mode_flag of an H.264 PPS: after two ue(v) ids (spec 7.3.2.2)."""
    bits = "".join(f"{byte:08b}" for byte in pps[1:])
    pos = 0
    for _ in range(2):  # pic_parameter_set_id, seq_parameter_set_id
        zeros = bits.index("1", pos) - pos
        pos += 2 * zeros + 1
    return bits[pos] == "1"


@dataclass
class Frame:
    """One access unit as a client received it."""

    at: float  # time.monotonic() when demux returned it
    data: bytes
    key: bool


@dataclass
class Reader:
    """Reads a camera on its own thread, recording every frame with its arrival time."""

    url: str
    frames: list[Frame] = field(default_factory=list)
    opened_at: float = 0.0  # when av.open was called
    live_from: float = math.inf  # frames buffered while av.open probed arrive before this
    error: BaseException | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.opened_at = time.monotonic()
        try:
            with open_stream(self.url) as container:
                with self.changed:
                    self.live_from = time.monotonic() + LIVE_MARGIN_S
                last_pts: int | None = None
                for packet in container.demux(container.streams.video[0]):
                    if self.stop.is_set():
                        return
                    if packet.size == 0:
                        continue
                    self._add(packet, same_frame=packet.pts is not None and packet.pts == last_pts)
                    last_pts = packet.pts
        except BaseException as err:
            self.error = err
        finally:
            with self.changed:
                self.changed.notify_all()

    def _add(self, packet: av.Packet, same_frame: bool) -> None:
        """Multi-slice frames may come as several packets with one pts: join them."""
        with self.changed:
            if same_frame:
                last = self.frames[-1]
                self.frames[-1] = Frame(last.at, last.data + bytes(packet), last.key)
            else:
                self.frames.append(Frame(time.monotonic(), bytes(packet), packet.is_keyframe))
            self.changed.notify_all()

    def wait_until(self, condition: Callable[[Reader], bool], timeout_s: float = 10.0) -> None:
        """Wait until ``condition(self)`` holds (checked under the lock)."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not condition(self):
                assert self.error is None, f"reader failed: {self.error!r}"
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"condition not reached in {timeout_s}s"
                self.changed.wait(remaining)

    def keyframes(self) -> list[int]:
        """Indices of keyframes received so far."""
        return [i for i, frame in enumerate(self.frames) if frame.key]

    def live_keyframes(self) -> list[int]:
        """Indices of keyframes received as they were sent, not from av.open's probe buffer."""
        return [i for i in self.keyframes() if self.frames[i].at > self.live_from]


@pytest.mark.parametrize(
    ("profile", "reported", "cabac"),
    [("main", "Main", True), ("baseline", "Constrained Baseline", False)],
)
def test_decodes_requested_size_and_real_profile(profile: str, reported: str, cabac: bool) -> None:
    with (
        RtspCamera(width=352, height=288, gop=SHORT_GOP, profile=profile) as cam,
        open_stream(cam.url) as container,
    ):
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        assert (frame.width, frame.height) == (352, 288)
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.profile == reported
        pps = nal_payload(stream.codec_context.extradata, "h264", 8)
        assert pps_uses_cabac(pps) is cabac


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("sps_pps", ["inband", "sdp-only"])
def test_parameter_sets_are_where_asked(codec: str, sps_pps: str) -> None:
    params = PARAMETER_SETS[codec]
    with (
        RtspCamera(codec=codec, sps_pps=sps_pps, gop=SHORT_GOP) as cam,
        open_stream(cam.url) as container,
    ):
        stream = container.streams.video[0]
        assert set(params) <= set(nal_types(stream.codec_context.extradata, codec))
        packets, decoded = [], 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packets.append((packet.is_keyframe, nal_types(bytes(packet), codec)))
            if any(key for key, _ in packets):  # decodable from the first keyframe on
                decoded += len(stream.codec_context.decode(packet))
            if len(packets) >= 2 * SHORT_GOP + 1:
                break

    assert sum(key for key, _ in packets) >= 2
    assert decoded >= SHORT_GOP
    for key, types in packets:
        if key and sps_pps == "inband":
            assert tuple(types[: len(params)]) == params, types
            assert not set(params) & set(types[len(params) :]), types
        else:
            assert not set(params) & set(types), (key, types)


def test_gop_cadence_is_the_cameras_not_the_clients() -> None:
    gop, fps = 20, 25
    with RtspCamera(gop=gop, fps=fps, sps_pps="sdp-only") as cam:
        first, second = Reader(cam.url), Reader(cam.url)
        first.thread.start()
        try:
            # Join mid-GOP: at least half a GOP after a keyframe the first client saw.
            first.wait_until(
                lambda r: bool(r.keyframes()) and len(r.frames) - 1 - r.keyframes()[-1] >= gop // 2
            )
            second.thread.start()
            second.wait_until(lambda r: len(r.live_keyframes()) >= 2)
            last_key_at = second.frames[second.keyframes()[-1]].at
            # ...and let the first client get that keyframe too.
            first.wait_until(lambda r: r.frames[-1].at > last_key_at)
        finally:
            first.stop.set()
            second.stop.set()
            first.thread.join(READ_TIMEOUT_S + 1)
            second.thread.join(READ_TIMEOUT_S + 1)

    a, b = first.frames, second.frames
    # One shared encoder: the second client's frames are a run of the first client's frames.
    # (Its very first frame may be incomplete if it joined inside a fragmented NAL unit.)
    starts = [(k, j) for k in range(2) for j in range(len(a)) if a[j].data == b[k].data]
    assert starts, "the two clients received different bitstreams"
    k, j = starts[0]
    overlap = min(len(b) - k, len(a) - j)
    assert overlap >= gop
    assert [f.data for f in b[k : k + overlap]] == [f.data for f in a[j : j + overlap]]
    # It joined mid-GOP and got no keyframe of its own: its first frame is a P-frame, and
    # the first client's keyframes kept their exact spacing while it joined.
    assert not b[k].key
    keys = first.keyframes()
    assert len(keys) >= 3
    assert {later - earlier for earlier, later in itertools.pairwise(keys)} == {gop}
    # Wall clock: both clients got the same keyframes at the same moments, one GOP apart.
    both_live = [
        (a[i].at, b[i - j + k].at)
        for i in keys
        if j <= i < j + overlap and a[i].at > first.live_from and b[i - j + k].at > second.live_from
    ]
    assert len(both_live) >= 2
    for at_first, at_second in both_live:
        assert at_first == pytest.approx(at_second, abs=LIVE_MARGIN_S)
    for earlier, later in itertools.pairwise(at for at, _ in both_live):
        assert later - earlier == pytest.approx(gop / fps, abs=0.25)


def test_counts_open_sessions() -> None:
    with RtspCamera(gop=SHORT_GOP) as cam:
        assert cam.open_sessions == 0
        with open_stream(cam.url):
            cam.wait_for_sessions(1)
            with open_stream(cam.url):
                cam.wait_for_sessions(2)
            cam.wait_for_sessions(1)
        cam.wait_for_sessions(0)
        assert (cam.max_sessions_seen, cam.sessions_opened) == (2, 2)


KEEP_OPEN_CLIENT = """
import sys, av
container = av.open(sys.argv[1], options={"rtsp_transport": "tcp"}, timeout=(5, 5))
print("open", flush=True)
sys.stdin.read()
"""


def test_session_of_a_killed_client_closes() -> None:
    with RtspCamera(gop=SHORT_GOP) as cam:
        client = subprocess.Popen(
            [sys.executable, "-c", KEEP_OPEN_CLIENT, cam.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert client.stdout is not None
            assert client.stdout.readline() == "open\n"
            cam.wait_for_sessions(1)
        finally:
            client.kill()  # no TEARDOWN: the TCP connection just drops
            client.communicate()
        cam.wait_for_sessions(0)


def test_stall_times_reads_out_and_resume_recovers() -> None:
    with RtspCamera(gop=SHORT_GOP) as cam:
        with open_stream(cam.url, read_timeout_s=1.0) as container:
            packets = container.demux(container.streams.video[0])
            next(packets)
            cam.stall()
            deadline = time.monotonic() + 10.0
            with pytest.raises(av.error.ExitError):
                for _ in packets:  # drains what was in flight, then the read times out
                    assert time.monotonic() < deadline, "media still flowing while stalled"
            assert cam.open_sessions == 1  # a hung camera: the connection stays open
        cam.resume()
        with open_stream(cam.url) as container:
            assert next(container.decode(video=0)).width == 320


PASSWORD = "p@ss:w/rd%41"  # '@', ':' and '/' would break the URL and '%41' reads as 'A'


@pytest.mark.parametrize("scheme", ["digest", "basic"])
def test_auth_with_percent_encoded_credentials(scheme: str) -> None:
    with RtspCamera(gop=SHORT_GOP, user="cook", password=PASSWORD, auth=scheme) as cam:
        assert "%40" in cam.url_with_credentials and "%3A" in cam.url_with_credentials
        with open_stream(cam.url_with_credentials) as container:
            assert next(container.decode(video=0)).width == 320
        wrong = cam.url.replace("rtsp://", "rtsp://cook:p%40ss%3Aw%2Frd@")
        for refused in (cam.url, wrong):
            with pytest.raises(av.error.HTTPUnauthorizedError):
                open_stream(refused)


def test_ffmpeg_splits_userinfo_at_the_last_at_and_decodes_it_once() -> None:
    password = "a%41:b@c"
    with RtspCamera(gop=SHORT_GOP, user="cook", password=password) as cam:
        hostpath = cam.url.removeprefix("rtsp://")
        # Raw, the password is decoded to "aA:b@c": refused.
        with pytest.raises(av.error.HTTPUnauthorizedError):
            open_stream(f"rtsp://cook:{password}@{hostpath}")
        # Raw '@' and ':' alone survive (split at the last '@', then at the first ':').
        as_typed = f"rtsp://cook:{password.replace('%41', '%2541')}@{hostpath}"
        with open_stream(as_typed) as container:
            assert container.streams.video[0].codec_context.width == 320


def make_clip(path: Path, frames: int = 12, size: tuple[int, int] = (160, 120)) -> Path:
    """A short H.264 MP4 of a moving bar, made with PyAV."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[:, (i * 10) % width : (i * 10) % width + 10] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_loops_a_file_live_at_the_requested_size(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")  # 0.4 s
    with (
        RtspCamera(source=clip, width=320, height=240, fps=25, gop=SHORT_GOP) as cam,
        open_stream(cam.url) as container,
    ):
        decoded = []
        for frame in container.decode(video=0):
            decoded.append(frame)
            if len(decoded) == 40:  # 1.6 s: several loops of the clip
                break
    assert {(f.width, f.height) for f in decoded} == {(320, 240)}
    # Live time runs on across loops in exact frame steps, as a camera's clock does.
    pts = [f.pts for f in decoded if f.pts is not None]
    step = round(1 / (25 * decoded[-1].time_base))
    assert {later - earlier for earlier, later in itertools.pairwise(pts)} == {step}
    assert (pts[-1] - pts[0]) * decoded[-1].time_base > 1


def test_restart_keeps_the_port_and_ends_the_old_sessions() -> None:
    with RtspCamera(gop=SHORT_GOP) as cam, open_stream(cam.url) as before:
        url = cam.url
        packets = before.demux(before.streams.video[0])
        next(packets)
        cam.restart()  # a camera reboot while a client is connected
        assert cam.url == url
        for _ in packets:  # the old connection drains and ends cleanly (EOF), no hang
            pass
        with open_stream(cam.url) as after:
            assert next(after.decode(video=0)).height == 240


def test_udp_transport() -> None:
    with (
        RtspCamera(gop=SHORT_GOP, transport="udp") as cam,
        av.open(cam.url, options={"rtsp_transport": "udp"}, timeout=(5, 5)) as container,
    ):
        assert next(container.decode(video=0)).width == 320


def rtsp_request(conn: socket.socket, reply: BinaryIO, request: str) -> tuple[str, dict, str]:
    """Send one raw RTSP request; return the status line, headers (lower-case) and body."""
    conn.sendall(request.encode())
    status = reply.readline().decode().strip()
    headers = {}
    while line := reply.readline().strip():
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, reply.read(int(headers.get("content-length", 0))).decode()


def test_reports_a_live_unseekable_stream() -> None:
    with (
        RtspCamera(gop=SHORT_GOP) as cam,
        socket.create_connection(("127.0.0.1", cam.port), timeout=5) as conn,
        conn.makefile("rb") as reply,
    ):
        describe = f"DESCRIBE {cam.url} RTSP/2.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
        status, _, sdp = rtsp_request(conn, reply, describe)
        assert status == "RTSP/2.0 200 OK"
        assert "a=range:npt=now-" in sdp
        transport = "RTP/AVP/TCP;unicast;interleaved=0-1"
        setup = f"SETUP {cam.url}/stream=0 RTSP/2.0\r\nCSeq: 2\r\nTransport: {transport}\r\n\r\n"
        status, headers, _ = rtsp_request(conn, reply, setup)
        assert status == "RTSP/2.0 200 OK"
        assert headers["media-properties"].startswith("No-Seeking")
