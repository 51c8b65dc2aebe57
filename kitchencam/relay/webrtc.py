"""WebRTC viewers with aiortc: pass-through H.264, one packetisation per camera, ICE policy.

aiortc's sender accepts already-encoded data from a track (``recv`` returning something other
than a frame) and hands it to its encoder's ``pack``. Each viewer's sender gets a
``SharedPacker`` whose ``pack`` returns the RTP payloads cached on the access unit, so a
camera's picture is split into RTP payloads once, whatever the number of viewers; per viewer
there remain header, encryption and sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aioice.ice
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs import CODECS
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import SessionDescription, candidate_from_sdp, parse_h264_profile_level_id

from kitchencam.relay.media import AccessUnit, StreamInfo
from kitchencam.relay.stream import CameraStream, ViewerQueue

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0
# A joining viewer gets the cached GOP faster than real time, but paced: sent in one burst,
# a GOP overflows the viewer's socket buffer, and NACK history is too short to repair it.
CATCHUP_BYTES_PER_S = 2_500_000
H264_CLOCK_HZ = 90_000

_default_host_addresses = aioice.ice.get_host_addresses


class OfferError(ValueError):
    """The SDP offer is malformed (400)."""


class NotPlayable(ValueError):
    """The viewer's browser cannot play this camera's stream (406); says what to do."""


def configure_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates only on ``addresses`` (empty: every interface but loopback,
    aioice's default).

    aioice has no setting for this (and never gathers 127.0.0.1), so its look-up function is
    replaced; this is the one process-wide knob of the relay, set once at start-up.
    """
    chosen = [str(ipaddress.ip_address(a)) for a in addresses]

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if not chosen:
            return _default_host_addresses(use_ipv4, use_ipv6)
        return [a for a in chosen if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a)]

    aioice.ice.get_host_addresses = host_addresses


def h264_capability(profile_level_id: str) -> RTCRtpCodecCapability:
    """aiortc's capability for H.264 with this profile, registered with aiortc if needed.

    aiortc only knows Constrained Baseline; cameras send Main or High, and answering with
    the camera's real profile lets the browser pick a decoder that can play it.
    """
    parameters = {
        "level-asymmetry-allowed": "1",
        "packetization-mode": "1",
        "profile-level-id": profile_level_id,
    }
    video = CODECS["video"]
    if not any(c.mimeType == "video/H264" and c.parameters == parameters for c in video):
        pt = max(c.payloadType for c in video if c.payloadType is not None) + 1
        base = next(c for c in video if c.mimeType == "video/H264")
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=H264_CLOCK_HZ,
                payloadType=pt,
                rtcpFeedback=list(base.rtcpFeedback),
                parameters=dict(parameters),
            )
        )
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=H264_CLOCK_HZ,
                payloadType=pt + 1,
                parameters={"apt": pt},
            )
        )
    return RTCRtpCodecCapability(
        mimeType="video/H264", clockRate=H264_CLOCK_HZ, parameters=dict(parameters)
    )


def _rtx_capability() -> RTCRtpCodecCapability:
    return next(
        c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/rtx"
    )


def check_offer(sdp: str, info: StreamInfo) -> list[RTCRtpCodecCapability]:
    """Validate an offer against the camera's stream; return our codec preferences.

    ``OfferError`` for a malformed offer, ``NotPlayable`` when the browser offers no codec
    that can carry the camera's video.
    """
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as err:
        raise OfferError(f"the SDP offer cannot be parsed ({type(err).__name__})") from None
    video = [m for m in parsed.media if m.kind == "video"]
    if not video:
        raise OfferError("the SDP offer has no video section")
    media = video[0]
    ice = media.ice
    dtls = media.dtls
    if (
        ice is None
        or not ice.usernameFragment
        or not ice.password
        or not (dtls and dtls.fingerprints)
    ):
        raise OfferError("the SDP offer lacks ICE credentials or a DTLS fingerprint")
    if info.codec != "h264" or not info.profile_level_id:
        raise NotPlayable(
            f"this camera sends {info.codec.upper()}, which browsers cannot play here; "
            "register the camera's H.264 sub-stream (or set the camera to H.264)"
        )
    offered = [
        c
        for c in media.rtp.codecs
        if c.mimeType.lower() == "video/h264"
        and str(c.parameters.get("packetization-mode", "0")) == "1"
    ]
    if not offered:
        raise NotPlayable("the browser offered no H.264 (packetization-mode 1); H.264 is required")
    try:
        want, _ = parse_h264_profile_level_id(info.profile_level_id)
    except ValueError:
        want = None
    exact = [c for c in offered if _profile(c) == want]
    if exact:
        # Answer with the browser's own string for the camera's profile: aiortc matches an
        # offered codec to the first local one of the same profile, so a camera string that
        # differs only in constraint flags or level (42c01e against 42e01f) would be dropped
        # again by the codec preferences and the negotiation would fail.
        profile_level_id = str(exact[0].parameters.get("profile-level-id", info.profile_level_id))
    else:
        # The browser does not list the camera's profile. Its decoder still plays it in
        # practice (Chromium plays Main under 42e01f); answer with what it offered.
        profile_level_id = str(offered[0].parameters.get("profile-level-id", "42e01f"))
        log.info("offer lists no H.264 %s; answering with %s", info.profile, profile_level_id)
    return [h264_capability(profile_level_id.lower()), _rtx_capability()]


def _profile(codec: RTCRtpCodecParameters) -> object:
    try:
        return parse_h264_profile_level_id(str(codec.parameters.get("profile-level-id", "42e01f")))[
            0
        ]
    except ValueError:
        return None


class SharedPacker:
    """Stands in for aiortc's encoder: RTP payloads of an access unit, made once per camera."""

    def pack(self, au: AccessUnit) -> tuple[list[bytes], int]:
        """Payloads and RTP timestamp of ``au`` (runs on the loop, per viewer and unit)."""
        payloads = au.payloads
        if payloads is None:
            payloads = au.payloads = H264Encoder._packetize(H264Encoder._split_bitstream(au.data))
        return payloads, au.pts


class PassthroughTrack(MediaStreamTrack):
    """A video track whose ``recv`` hands out the camera's access units, never frames."""

    kind = "video"

    def __init__(self, queue: ViewerQueue) -> None:
        super().__init__()
        self._queue = queue
        self._not_before = 0.0

    async def recv(self) -> AccessUnit:  # type: ignore[override]
        """The next access unit for this viewer, paced while it catches up with live."""
        try:
            au = await self._queue.get()
        except EOFError:
            self.stop()
            raise MediaStreamError from None
        if len(self._queue) == 0:
            self._not_before = 0.0
            return au
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._not_before > now:
            await asyncio.sleep(self._not_before - now)
        self._not_before = max(now, self._not_before) + len(au.data) / CATCHUP_BYTES_PER_S
        return au


@dataclass
class ViewerSession:
    """One WHEP viewer: its peer connection, its queue, and its URL's secret."""

    id: str
    camera_id: str
    pc: RTCPeerConnection
    queue: ViewerQueue
    etag: str
    created: float = field(default_factory=time.monotonic)
    connected: bool = False
    deadline: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class IceSettings:
    """ICE servers for ``RTCConfiguration`` and WHEP ``Link`` headers."""

    servers: tuple[RTCIceServer, ...] = ()

    def configuration(self) -> RTCConfiguration:
        """Our own configuration: never aiortc's default public STUN server."""
        return RTCConfiguration(iceServers=list(self.servers))


class ViewerHub:
    """The WebRTC viewers of this process, with caps per camera and in all."""

    def __init__(
        self,
        ice: IceSettings,
        max_per_camera: int,
        max_total: int,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._ice = ice
        self._max_per_camera = max_per_camera
        self._max_total = max_total
        self._sessions: dict[str, ViewerSession] = {}
        self._streams: dict[str, CameraStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_change = on_change

    @property
    def count(self) -> int:
        """Viewers in this process."""
        return len(self._sessions)

    def get(self, session_id: str) -> ViewerSession | None:
        """A viewer by its session id."""
        return self._sessions.get(session_id)

    def has_room(self, stream: CameraStream) -> str | None:
        """Why a new viewer cannot join (``None``: it can)."""
        if len(self._sessions) >= self._max_total:
            return "this relay serves as many viewers as it may; try again shortly"
        if stream.viewers >= self._max_per_camera:
            return "this kitchen has as many viewers as it may; try again shortly"
        return None

    async def open(self, stream: CameraStream, offer_sdp: str) -> tuple[ViewerSession, str]:
        """Answer an offer for ``stream``; return the session and the SDP answer."""
        assert stream.info is not None
        preferences = check_offer(offer_sdp, stream.info)
        pc = RTCPeerConnection(self._ice.configuration())
        queue: ViewerQueue | None = None
        try:
            transceiver = pc.addTransceiver("video", direction="sendonly")
            transceiver.setCodecPreferences(preferences)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            except Exception as err:
                raise OfferError(
                    f"the SDP offer was refused ({type(err).__name__}: {err})"
                ) from None
            queue = stream.add_viewer()
            track = PassthroughTrack(queue)
            transceiver.sender.replaceTrack(track)
            transceiver.sender._RTCRtpSender__encoder = SharedPacker()  # type: ignore[attr-defined]
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException:
            if queue is not None:
                stream.remove_viewer(queue)
            await pc.close()
            raise
        session = ViewerSession(
            id=secrets.token_urlsafe(24),
            camera_id=stream.camera_id,
            pc=pc,
            queue=queue,
            etag=f'"{secrets.token_hex(8)}"',
        )
        self._sessions[session.id] = session
        self._streams[session.id] = stream
        self._watch(session)
        log.info("camera %s: viewer %s… joined", stream.camera_id, session.id[:6])
        if self._on_change:
            self._on_change()
        return session, pc.localDescription.sdp

    def _watch(self, session: ViewerSession) -> None:
        async def deadline() -> None:
            await asyncio.sleep(CONNECT_TIMEOUT_S)
            if not session.connected:
                await self.close(session.id, "never connected")

        task = asyncio.create_task(deadline(), name=f"viewer-deadline-{session.id[:6]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        session.deadline = task

        @session.pc.on("connectionstatechange")
        async def on_state() -> None:
            state = session.pc.connectionState
            if state == "connected":
                session.connected = True
                task.cancel()
            elif state in ("failed", "closed"):
                await self.close(session.id, f"connection {state}")

    async def add_candidates(self, session: ViewerSession, fragment: str) -> int:
        """Add the remote ICE candidates of a trickle-ICE SDP fragment; return how many."""
        added = 0
        for line in fragment.splitlines():
            line = line.strip()
            if line.startswith("a=candidate:"):
                try:
                    candidate = candidate_from_sdp(line[len("a=") :])
                except (ValueError, IndexError) as err:
                    raise OfferError(f"a candidate line cannot be parsed: {err}") from None
                transceivers = session.pc.getTransceivers()
                candidate.sdpMid = transceivers[0].mid if transceivers else None
                await session.pc.addIceCandidate(candidate)
                added += 1
        return added

    async def close(self, session_id: str, why: str = "closed") -> bool:
        """End a viewer; False if there was none with that id."""
        session = self._sessions.pop(session_id, None)
        stream = self._streams.pop(session_id, None)
        if session is None:
            return False
        if session.deadline is not None and session.deadline is not asyncio.current_task():
            session.deadline.cancel()
        if stream is not None:
            stream.remove_viewer(session.queue)
        with contextlib.suppress(Exception):
            await session.pc.close()
        log.info("camera %s: viewer %s… left (%s)", session.camera_id, session_id[:6], why)
        if self._on_change:
            self._on_change()
        return True

    async def close_camera(self, camera_id: str) -> None:
        """End every viewer of one camera."""
        for sid in [s.id for s in self._sessions.values() if s.camera_id == camera_id]:
            await self.close(sid, "camera removed")

    async def close_all(self) -> None:
        """End every viewer and timer."""
        for sid in list(self._sessions):
            await self.close(sid, "shutting down")
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
