"""Keeps one camera stream's ingest running: connect-time address check, retries, stall watch.

The worker only runs; the supervisor retries with back-off, watches for stalls, and records
why the stream is not live. Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kitchencam.addresses import AddressError, AddressPolicy, StreamAddress
from kitchencam.relay.backoff import Backoff
from kitchencam.relay.demo import DemoWorker, scene_for, serves_demo
from kitchencam.relay.ingest import (
    READ_TIMEOUT_S,
    IngestError,
    IngestSink,
    IngestTarget,
    IngestWorker,
    SourceWorker,
)
from kitchencam.relay.media import AccessUnit, IngestState, IngestStatus, Reason, StreamInfo
from kitchencam.relay.stream import CameraStream

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = READ_TIMEOUT_S + 1.0
WATCH_INTERVAL_S = 0.5
JOIN_TIMEOUT_S = READ_TIMEOUT_S + 2.0


class Supervisor:
    """Runs and re-runs the ingest of one stream of one camera."""

    def __init__(
        self,
        stream: CameraStream,
        address: StreamAddress,
        username: str | None,
        password: str | None,
        transport: str,
        policy: AddressPolicy,
        backoff: Backoff | None = None,
    ) -> None:
        self.stream = stream
        self._address = address
        self._username = username
        self._password = password
        self._transport = transport
        self._policy = policy
        self._backoff = backoff or Backoff()
        self._live = False
        self._session_started = 0.0
        self._context = f"camera {stream.camera_id}"

    def __repr__(self) -> str:
        return f"Supervisor({self._context}, {self._address.url})"

    def _set(self, state: IngestState, reason: Reason | None = None, detail: str = "") -> None:
        current = self.stream.status
        if current and (current.state, current.reason, current.detail) == (state, reason, detail):
            return
        self.stream.set_status(
            IngestStatus(state, time.time(), reason, detail, self.stream.last_packet_wall)
        )

    async def run(self) -> None:
        """Pull until cancelled, retrying failures with back-off."""
        self._set(IngestState.STARTING)
        while True:
            started = time.monotonic()
            reason, detail = await self._attempt()
            ran_for = time.monotonic() - started
            delay = self._backoff.next_delay(ran_for if self._live else 0.0)
            self._live = False
            state = (
                IngestState.REFUSED if reason is Reason.ADDRESS_REFUSED else IngestState.RETRYING
            )
            self._set(state, reason, detail)
            log.warning(
                "%s: ingest ended (%s: %s); retrying in %.1fs",
                self._context,
                reason.value,
                detail,
                delay,
            )
            await asyncio.sleep(delay)

    async def _attempt(self) -> tuple[Reason, str]:
        """One connection, from address check to the end of the stream."""
        self._set(IngestState.CONNECTING)
        loop = asyncio.get_running_loop()
        sink = IngestSink(self._on_session, self._on_unit, self._on_info)
        worker: SourceWorker
        if serves_demo(self._policy, self._address):
            # Only a demo process's policy says so (KITCHENCAM_DEMO): see relay/demo.py.
            worker = DemoWorker(self.stream.camera_id, scene_for(self._address), loop, sink)
        else:
            try:
                ip = await self._policy.check(self._address)
            except AddressError as err:
                return Reason.ADDRESS_REFUSED, str(err)
            target = IngestTarget(
                self._address.url_for(ip, self._username, self._password), self._transport
            )
            worker = IngestWorker(self.stream.camera_id, target, loop, sink)
        done = worker.start()
        self._session_started = time.monotonic()
        try:
            return await self._watch(worker, done)
        finally:
            worker.stop()
            with contextlib.suppress(IngestError, TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(done), JOIN_TIMEOUT_S)

    async def _watch(self, worker: SourceWorker, done: asyncio.Future[None]) -> tuple[Reason, str]:
        while True:
            finished, _ = await asyncio.wait({done}, timeout=WATCH_INTERVAL_S)
            if finished:
                try:
                    done.result()
                except IngestError as err:
                    return err.reason, err.detail
                return Reason.STREAM_ENDED, "the camera ended the stream"
            last = self.stream.last_packet_monotonic
            since = max(last or 0.0, self._session_started)
            if time.monotonic() - since > STALL_TIMEOUT_S:
                self._set(IngestState.STALLED, Reason.STALLED, "no video for a while")
                worker.stop()
                return Reason.STALLED, (
                    "connected but no video" if not self._live else "the camera stopped sending"
                )

    # -- called on the loop by the worker ------------------------------------------------

    def _on_session(self, info: StreamInfo) -> None:
        self.stream.begin_session(info)
        log.info(
            "%s: connected (%s %s %sx%s)",
            self._context,
            info.codec,
            info.profile or "",
            info.width,
            info.height,
        )

    def _on_unit(self, au: AccessUnit, discontinuity: bool) -> None:
        self.stream.publish(au, discontinuity)
        if not self._live:
            self._live = True
            self._set(IngestState.LIVE)

    def _on_info(self, info: StreamInfo) -> None:
        self.stream.info = info
