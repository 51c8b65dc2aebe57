"""A real WHEP viewer built on aiortc: posts an offer, receives and decodes the video."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

FIRST_FRAME_DEADLINE_S = 15.0


class DecodeErrorCounter(logging.Handler):
    """Counts aiortc's decoder failures (it logs them instead of raising)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "decode" in record.getMessage().lower():
            self.errors += 1


@dataclass
class WhepViewer:
    """One viewer: its peer connection, session URL and what it received."""

    base: str
    camera_id: str
    pc: RTCPeerConnection = field(
        default_factory=lambda: RTCPeerConnection(RTCConfiguration(iceServers=[]))
    )
    location: str | None = None
    frames: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    first_frame_s: float | None = None
    answer: str = ""
    _task: asyncio.Task[None] | None = None
    _frame_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self, session: aiohttp.ClientSession, read: bool = True) -> None:
        """Post the offer, apply the answer, and start receiving (or, with ``read=False``,
        start a viewer that never reads its track)."""
        self.pc.addTransceiver("video", direction="recvonly")
        track_ready: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if not track_ready.done():
                track_ready.set_result(track)

        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.started = time.monotonic()
        async with session.post(
            f"{self.base}/whep/{self.camera_id}",
            data=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            text = await resp.text()
            assert resp.status == 201, f"{resp.status}: {text}"
            self.location = resp.headers["Location"]
            self.answer = text
        await self.pc.setRemoteDescription(RTCSessionDescription(self.answer, "answer"))
        track = await asyncio.wait_for(track_ready, 5)
        if read:
            self._task = asyncio.create_task(self._receive(track))

    async def _receive(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                if self.first_frame_s is None:
                    self.first_frame_s = time.monotonic() - self.started
                self.frames += 1
                self.sizes.add((frame.width, frame.height))  # type: ignore[union-attr]
                self._frame_event.set()

    async def wait_frames(self, count: int, deadline_s: float = FIRST_FRAME_DEADLINE_S) -> None:
        """Wait until ``count`` more frames have been decoded."""
        target = self.frames + count
        end = time.monotonic() + deadline_s
        while self.frames < target:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"viewer decoded {self.frames} frames, wanted {target} within {deadline_s}s"
                )
            self._frame_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._frame_event.wait(), remaining)

    async def close(self, session: aiohttp.ClientSession | None = None) -> None:
        """Stop receiving, say goodbye with DELETE, close the peer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if session is not None and self.location is not None:
            async with session.delete(self.base + self.location) as resp:
                assert resp.status in (200, 204, 404)
        await self.pc.close()
