#!/usr/bin/python3
"""A real RTSP IP camera for tests, built on Debian's GStreamer RTSP server.

Run it with the *system* interpreter (``/usr/bin/python3``): python3-gi is only importable
there. It behaves like a real camera rather than a video-on-demand server:

* One encoder runs from start-up, whether or not anybody watches, and every client gets the
  same encoded frames (a shared media whose ``appsrc`` is fed from that encoder). A client
  joining mid-GOP therefore waits for the camera's next keyframe, like with real hardware.
* It is live and not seekable: FFmpeg's ``PLAY`` with ``Range: npt=0.000-`` is ignored, and
  upstream force-key-unit requests never reach the encoder, so the GOP cadence is fixed.

Protocol on stdout (one line each, flushed): ``READY rtsp://127.0.0.1:PORT/PATH`` once the
first frame is encoded; ``SESSION-OPEN <n>`` / ``SESSION-CLOSE <n>`` with ``n`` the number of
open RTSP sessions; ``STALLED`` / ``RESUMED`` after SIGUSR1 (stop sending media, keep the
connections open, like a hung camera) / SIGUSR2. SIGTERM (or SIGINT) exits cleanly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

HOST = "127.0.0.1"
ROLE = "camera-user"
SESSION_CLEANUP_INTERVAL_S = 2
# Encoded frames queued per client media before the oldest is dropped (a stuck client must not
# grow our memory; a real camera drops too).
MEDIA_QUEUE_FRAMES = 50
# x264 sliced threads: each frame is cut into this many slices (fixed, so the bitstream does not
# depend on the machine's core count; multi-slice frames are what real cameras send too).
ENCODER_THREADS = 2
# NAL unit types of parameter sets (SPS/PPS, and VPS for H.265).
PARAMETER_SET_TYPES = {"h264": frozenset({7, 8}), "h265": frozenset({32, 33, 34})}
NAL_LENGTH_SIZE = 4  # bytes; x264enc's avc and h265parse's hvc1 output both use 4
TRANSPORTS = {
    "tcp": GstRtsp.RTSPLowerTrans.TCP,
    "udp": GstRtsp.RTSPLowerTrans.UDP,
    "both": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP,
}

_print_lock = threading.Lock()
QuitFn = Callable[[int], None]  # stop the main loop with this exit status


def emit(line: str) -> None:
    """Print one protocol line to stdout and flush it (any thread)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def positive(text: str) -> int:
    """argparse type: an integer > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--port", type=int, default=0, help="RTSP port on 127.0.0.1 (0: pick a free one)"
    )
    p.add_argument("--path", default="/stream", help="mount point (default /stream)")
    p.add_argument("--width", type=positive, default=320)
    p.add_argument("--height", type=positive, default=240)
    p.add_argument("--fps", type=positive, default=25)
    p.add_argument("--bitrate-kbps", type=positive, default=1000)
    p.add_argument("--gop", type=positive, default=50, help="keyframe interval in frames")
    p.add_argument("--codec", choices=("h264", "h265"), default="h264")
    p.add_argument("--profile", choices=("baseline", "main"), default="main")
    p.add_argument("--sps-pps", choices=("inband", "sdp-only"), default="inband")
    p.add_argument("--source", default="testsrc", help="'testsrc' or a video file to loop")
    p.add_argument("--user", help="require RTSP basic/digest auth with this user")
    p.add_argument("--password", help="password for --user")
    p.add_argument(
        "--auth",
        choices=("digest", "basic"),
        default="digest",
        help="RTSP auth scheme offered with --user (PyGObject cannot OR the two flags)",
    )
    p.add_argument("--transport", choices=tuple(TRANSPORTS), default="both")
    p.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin closes (so a camera never outlives the test process)",
    )
    args = p.parse_args(argv)
    if (args.user is None) != (args.password is None):
        p.error("--user and --password go together")
    if args.user is not None and ":" in args.user:
        p.error("--user cannot contain ':' (basic auth splits user:password at the first ':')")
    if args.codec == "h265" and args.profile != "main":
        p.error("h265 supports only --profile main")
    if not args.path.startswith("/"):
        p.error("--path must start with '/'")
    if args.source != "testsrc" and not os.path.isfile(args.source):
        p.error(f"--source: no such file: {args.source}")
    return args


def raw_caps(args: argparse.Namespace) -> str:
    """Caps of the raw frames that enter the encoder."""
    return f"video/x-raw,format=I420,width={args.width},height={args.height},framerate={args.fps}/1"


def encoder_description(args: argparse.Namespace) -> str:
    """gst-launch description of the always-running source and encoder.

    The encoder emits length-prefixed access units (avc/hvc1): their codec_data becomes the
    SDP's parameter sets, and ``ParameterSetPlacer`` decides which go in-band.
    """
    if args.source == "testsrc":
        source = f"videotestsrc is-live=true pattern=smpte horizontal-speed=3 ! {raw_caps(args)}"
    else:
        # Raw frames are pushed, already stamped, by FileLooper.
        source = (
            "appsrc name=raw is-live=true format=time leaky-type=downstream "
            f"max-buffers=2 caps={raw_caps(args)}"
        )
    if args.codec == "h264":
        # ultrafast turns CABAC off, which silently makes "main" Constrained Baseline.
        cabac = "true" if args.profile == "main" else "false"
        encoder = (
            f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={args.bitrate_kbps} "
            f"key-int-max={args.gop} bframes=0 cabac={cabac} threads={ENCODER_THREADS} "
            "aud=false option-string=scenecut=0 "
            f"! video/x-h264,profile={args.profile} "
            "! h264parse ! video/x-h264,stream-format=avc,alignment=au"
        )
    else:
        encoder = (
            f"x265enc tune=zerolatency speed-preset=ultrafast bitrate={args.bitrate_kbps} "
            f"key-int-max={args.gop} option-string=scenecut=0:bframes=0:open-gop=0 "
            "! video/x-h265,profile=main "
            "! h265parse ! video/x-h265,stream-format=hvc1,alignment=au"
        )
    return f"{source} ! {encoder} ! appsink name=encoded sync=false max-buffers=8 drop=true"


def payloader_description(args: argparse.Namespace) -> str:
    """gst-launch description of the shared RTSP media, fed with encoded frames."""
    pay = "rtph264pay" if args.codec == "h264" else "rtph265pay"
    # config-interval=0: the payloader adds no parameter sets (ParameterSetPlacer did).
    return (
        "( appsrc name=src is-live=true format=time min-latency=0 "
        f"leaky-type=downstream max-buffers={MEDIA_QUEUE_FRAMES} "
        f"! {pay} name=pay0 pt=96 config-interval=0 )"
    )


def nal_type(header: int, codec: str) -> int:
    """The NAL unit type in the first header byte of an H.264 or H.265 NAL unit."""
    return header & 0x1F if codec == "h264" else (header >> 1) & 0x3F


def nal_units(access_unit: bytes) -> list[bytes]:
    """Split a length-prefixed (avc/hvc1) access unit into NAL units, length prefixes kept."""
    units = []
    pos = 0
    while pos + NAL_LENGTH_SIZE < len(access_unit):
        end = pos + NAL_LENGTH_SIZE + int.from_bytes(access_unit[pos : pos + NAL_LENGTH_SIZE])
        units.append(access_unit[pos:end])
        pos = end
    return units


class ParameterSetPlacer:
    """Puts parameter sets exactly where ``--sps-pps`` says, whatever the encoder did.

    x264 repeats SPS/PPS before every IDR and x265 sends VPS/SPS/PPS once, in any stream
    format. We strip them all and, for ``inband``, put the latest ones once in front of every
    keyframe, as cameras do (rtph264pay's ``config-interval=-1`` would repeat them before
    every IDR *slice*). The SDP's sprop-parameter-sets come from the caps' codec_data.
    """

    def __init__(self, codec: str, inband: bool) -> None:
        self._codec = codec
        self._inband = inband
        self._latest: list[bytes] = []

    def place(self, access_unit: bytes, keyframe: bool) -> bytes:
        """Return ``access_unit`` with its parameter sets removed or (re)placed up front."""
        params, others = [], []
        for unit in nal_units(access_unit):
            is_param = (
                nal_type(unit[NAL_LENGTH_SIZE], self._codec) in PARAMETER_SET_TYPES[self._codec]
            )
            (params if is_param else others).append(unit)
        if params:
            self._latest = params
        if self._inband and keyframe:
            others = self._latest + others
        return b"".join(others)


class Feed:
    """Hands encoded frames to the current shared RTSP media; stalls on request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._appsrc: Gst.Element | None = None
        self.caps: Gst.Caps | None = None
        self.stalled = False

    def attach(self, appsrc: Gst.Element) -> None:
        """Feed ``appsrc`` (of a newly configured media) from now on (RTSP thread)."""
        assert self.caps is not None
        appsrc.set_property("caps", self.caps)
        appsrc.get_static_pad("src").add_probe(
            Gst.PadProbeType.EVENT_UPSTREAM | Gst.PadProbeType.QUERY_UPSTREAM, _live_only
        )
        with self._lock:
            self._appsrc = appsrc

    def detach(self, appsrc: Gst.Element) -> None:
        """Stop feeding ``appsrc`` once its media is unprepared (RTSP thread)."""
        with self._lock:
            if self._appsrc is appsrc:
                self._appsrc = None

    def push(self, buffer: Gst.Buffer, captured_at: int) -> None:
        """Send one encoded frame to the clients unless stalled (encoder thread).

        ``captured_at`` is the frame's capture time on the system clock that both pipelines
        share; stamping it in the media's running time keeps the encoder's exact frame spacing.
        """
        with self._lock:
            appsrc = self._appsrc
        if appsrc is None or self.stalled:
            return
        if appsrc.get_current_running_time() == Gst.CLOCK_TIME_NONE:
            return  # the media pipeline is not PLAYING yet: it has no base time
        pts = captured_at - appsrc.get_base_time()
        if pts >= 0:  # frames captured before the media started are not sent
            buffer.pts = buffer.dts = pts
            appsrc.emit("push-buffer", buffer)


def _live_only(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
    """Refuse seeking queries and drop key-unit requests coming up from the RTSP side.

    Without an answer to SEEKING the RTSP media marks itself not seekable (-1), so PLAY's
    ``Range: npt=0.000-`` is ignored; a client's force-key-unit must not change the GOP.
    """
    if info.type & Gst.PadProbeType.QUERY_UPSTREAM:
        return (
            Gst.PadProbeReturn.DROP
            if info.get_query().type == Gst.QueryType.SEEKING
            else Gst.PadProbeReturn.OK
        )
    structure = info.get_event().get_structure()
    if structure is not None and structure.get_name() == "GstForceKeyUnit":
        return Gst.PadProbeReturn.DROP
    return Gst.PadProbeReturn.OK


class Encoder:
    """The camera's single encoder pipeline, running from start-up until exit."""

    def __init__(self, args: argparse.Namespace, feed: Feed, quit_: QuitFn) -> None:
        self.pipeline = Gst.parse_launch(encoder_description(args))
        self._placer = ParameterSetPlacer(args.codec, inband=args.sps_pps == "inband")
        self.first_frame = threading.Event()
        self._feed = feed
        sink = self.pipeline.get_by_name("encoded")
        sink.set_property("emit-signals", True)
        sink.connect("new-sample", self._on_sample)
        _watch_bus(self.pipeline, quit_)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        """Take one encoded frame (encoder streaming thread)."""
        sample = sink.emit("pull-sample")
        if self._feed.caps is None:
            self._feed.caps = sample.get_caps()
            self.first_frame.set()
        encoded = sample.get_buffer()
        keyframe = not encoded.has_flags(Gst.BufferFlags.DELTA_UNIT)
        au = self._placer.place(encoded.extract_dup(0, encoded.get_size()), keyframe)
        frame = Gst.Buffer.new_wrapped(au)
        frame.duration = encoded.duration
        frame.set_flags(encoded.get_flags())
        # x264enc shifts timestamps by 1000 h (and its segment with them): use running time.
        running = sample.get_segment().to_running_time(Gst.Format.TIME, encoded.pts)
        self._feed.push(frame, captured_at=running + self.pipeline.get_base_time())
        return Gst.FlowReturn.OK


class FileLooper:
    """Decodes a video file at its native pace, forever, into the encoder's raw appsrc."""

    def __init__(self, args: argparse.Namespace, target: Gst.Element, quit_: QuitFn) -> None:
        self.pipeline = Gst.parse_launch(
            "filesrc name=file ! decodebin ! videoconvert ! videoscale ! videorate "
            f"! {raw_caps(args)} ! appsink name=frames sync=true max-buffers=2"
        )
        self.pipeline.get_by_name("file").set_property("location", args.source)
        self._target = target
        self._frame_ns = Gst.SECOND // args.fps
        self._first_at: int | None = None  # encoder running time of the first frame
        self._next_slot = 0
        sink = self.pipeline.get_by_name("frames")
        sink.set_property("emit-signals", True)
        sink.connect("new-sample", self._on_sample)
        _watch_bus(self.pipeline, quit_, on_eos=self._rewind)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        """Forward one decoded frame to the encoder (decoder streaming thread).

        It is stamped with the nearest free frame slot (counted from the first frame), so
        timestamps keep exact frame steps across loops and jitter; a frame late by more than
        half a frame leaves a one-frame gap, as a camera dropping a frame would.
        """
        frame = sink.emit("pull-sample").get_buffer().copy()
        now = self._target.get_current_running_time()
        if now == Gst.CLOCK_TIME_NONE:
            return Gst.FlowReturn.OK  # encoder not PLAYING yet
        if self._first_at is None:
            self._first_at = now
        slot = max(self._next_slot, round((now - self._first_at) / self._frame_ns))
        self._next_slot = slot + 1
        frame.pts = frame.dts = self._first_at + slot * self._frame_ns
        frame.duration = self._frame_ns
        self._target.emit("push-buffer", frame)
        return Gst.FlowReturn.OK

    def _rewind(self) -> None:
        """Loop: seek back to the start (frames are restamped, so time keeps running)."""
        self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH, 0)


def _watch_bus(
    pipeline: Gst.Pipeline, quit_: QuitFn, on_eos: Callable[[], None] | None = None
) -> None:
    """Quit with status 1 on pipeline errors; call ``on_eos`` at end of stream."""

    def on_message(_bus: Gst.Bus, message: Gst.Message) -> bool:
        if message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            print(f"rtsp_camera: pipeline error: {err.message} ({debug})", file=sys.stderr)
            quit_(1)
        elif message.type == Gst.MessageType.EOS and on_eos is not None:
            on_eos()
        return True

    pipeline.get_bus().add_watch(GLib.PRIORITY_DEFAULT, on_message)


class SessionCounter:
    """Prints SESSION-OPEN/SESSION-CLOSE as RTSP sessions come and go (RTSP main thread).

    A session also ends when its client's connection closes without TEARDOWN (a killed
    client): like many cameras we drop it then instead of waiting for the session timeout.
    """

    def __init__(self, pool: GstRtspServer.RTSPSessionPool) -> None:
        self._pool = pool
        self._open: set[str] = set()
        pool.connect("session-removed", self._on_removed)

    def watch(self, client: GstRtspServer.RTSPClient) -> None:
        """Follow the sessions of a newly connected client."""
        sessions: list[GstRtspServer.RTSPSession] = []
        client.connect("new-session", self._on_new, sessions)
        client.connect("closed", self._on_closed, sessions)

    def _on_new(self, _client: Any, session: GstRtspServer.RTSPSession, sessions: list) -> None:
        sessions.append(session)
        self._open.add(session.get_sessionid())
        emit(f"SESSION-OPEN {len(self._open)}")

    def _on_closed(self, _client: Any, sessions: list) -> None:
        for session in sessions:
            self._pool.remove(session)  # no-op for sessions already torn down
        sessions.clear()

    def _on_removed(self, _pool: Any, session: GstRtspServer.RTSPSession) -> None:
        sid = session.get_sessionid()
        if sid in self._open:
            self._open.discard(sid)
            emit(f"SESSION-CLOSE {len(self._open)}")


def make_auth(user: str, password: str, scheme: str) -> GstRtspServer.RTSPAuth:
    """Basic or digest auth for one user, who is granted the camera's role."""
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
    auth = GstRtspServer.RTSPAuth()
    if scheme == "basic":
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    else:
        auth.add_digest(user, password, token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    return auth


def make_server(args: argparse.Namespace, feed: Feed) -> GstRtspServer.RTSPServer:
    """The RTSP server with one shared, live mount fed by ``feed``."""
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(payloader_description(args))
    factory.set_shared(True)
    factory.set_protocols(TRANSPORTS[args.transport])

    def on_configure(_factory: Any, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        feed.attach(appsrc)
        media.connect("unprepared", lambda _media: feed.detach(appsrc))

    factory.connect("media-configure", on_configure)

    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    if args.user is not None:
        server.set_auth(make_auth(args.user, args.password, args.auth))
        factory.add_role_from_structure(
            Gst.Structure.new_from_string(
                f"{ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
    server.get_mount_points().add_factory(args.path, factory)
    return server


def main(argv: list[str] | None = None) -> int:
    """Run the camera until SIGTERM; return the exit status."""
    args = parse_args(argv)
    Gst.init(None)
    loop = GLib.MainLoop()
    status = [0]

    def quit_(code: int) -> None:
        status[0] = status[0] or code
        loop.quit()

    feed = Feed()
    encoder = Encoder(args, feed, quit_)
    pipelines = [encoder.pipeline]
    if args.source != "testsrc":
        pipelines.append(FileLooper(args, encoder.pipeline.get_by_name("raw"), quit_).pipeline)

    server = make_server(args, feed)
    pool = server.get_session_pool()
    sessions = SessionCounter(pool)
    server.connect("client-connected", lambda _server, client: sessions.watch(client))
    GLib.timeout_add_seconds(SESSION_CLEANUP_INTERVAL_S, lambda: pool.cleanup() >= 0)

    def on_signal(signum: int) -> bool:
        if signum in (signal.SIGUSR1, signal.SIGUSR2):
            feed.stalled = signum == signal.SIGUSR1
            emit("STALLED" if feed.stalled else "RESUMED")
        else:
            quit_(0)
        return True

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, on_signal, signum)
    if args.exit_on_stdin_eof:
        GLib.io_add_watch(
            sys.stdin.fileno(), GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP, _on_stdin, quit_
        )

    def serve_once_encoding() -> bool:
        """Open the RTSP port once the encoder's caps (for the SDP) are known."""
        if not encoder.first_frame.is_set():
            return True
        if not server.attach(None):
            print(f"rtsp_camera: cannot listen on {HOST}:{args.port}", file=sys.stderr)
            quit_(1)
            return False
        emit(f"READY rtsp://{HOST}:{server.get_bound_port()}{args.path}")
        return False

    for pipeline in pipelines:
        pipeline.set_state(Gst.State.PLAYING)
    GLib.timeout_add(10, serve_once_encoding)
    loop.run()
    for pipeline in pipelines:
        pipeline.set_state(Gst.State.NULL)
    return status[0]


def _on_stdin(fd: int, _condition: Any, quit_: QuitFn) -> bool:
    """Quit when stdin reaches EOF (the parent test process went away)."""
    if not os.read(fd, 4096):
        quit_(0)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
