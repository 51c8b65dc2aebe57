"""The relay's compliance side: sample keyframes, analyse them off the loop, report news.

The relay holds each camera's single pull, so analysis happens where the packets are: the
relay hub hands every camera's (sub-)stream to a :class:`KeyframeSampler` made by
:meth:`Observers.make_observer`. The sampler takes at most one keyframe per
``KITCHENCAM_SAMPLE_INTERVAL_S``, decodes it (``skip_frame="NONKEY"``) and runs the camera's
monitor on a small shared thread pool, and appends each state change of the monitor, with its
JPEG evidence, to the ``kc:transitions`` stream that the checker role consumes. Frames never
cross Redis. The monitor's memory and baseline are saved on change, so another relay (or this
one after a restart) continues where it was.

Threads: ``on_access_unit``, ``on_status``, ticks and every Redis write run on the event loop;
decoding and analysis run on a pool thread, one job at a time per camera, and come back to
the loop only through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol

import av
from redis.exceptions import RedisError

from kitchencam import keys
from kitchencam.compliance.baseline import Baseline
from kitchencam.compliance.frames import FrameError, KeyframeDecoder
from kitchencam.compliance.pipeline import CameraAnalysis, Outcome
from kitchencam.compliance.records import Kind, News
from kitchencam.compliance.states import (
    Config,
    ConnectionProblem,
    Evidence,
    MediaFlowing,
    Memory,
    Problem,
    State,
    Tick,
)
from kitchencam.compliance.store import ComplianceStore
from kitchencam.logs import redact
from kitchencam.models import Camera
from kitchencam.redisconn import RedisOutage
from kitchencam.relay.leases import FencedBatch, LeaseLost
from kitchencam.relay.media import AccessUnit, IngestState, IngestStatus, Reason, StreamInfo

log = logging.getLogger(__name__)

TICK_INTERVAL_S: Final = 1.0
"""Heartbeat of each sampler: lets ``offline`` be raised on time while no packets come."""

INTERVAL_TOLERANCE: Final = 0.8
"""A keyframe is taken once 80 % of the interval has passed since the last sample, so that
keyframe jitter around a GOP equal to the interval does not halve the sampling rate."""

MAX_JOBS: Final = 16
"""Jobs queued per camera (frames: one at most; connection news and ticks: coalesced)."""

CLOSE_TIMEOUT_S: Final = 5.0
LEASE_RETRY_S: Final = 0.5
"""Wait before retrying a write refused by the camera's lease (the relay checks the lease at
once: it re-claims a lease that vanished, or stops the camera and closes this sampler)."""
FOLLOW_POLL_S: Final = 1.0
"""How often a relay looks for newly approved reference views."""

_CANNOT_CONNECT: Final = frozenset(
    {
        Reason.CONNECTION_REFUSED,
        Reason.TIMEOUT,
        Reason.UNAUTHORIZED,
        Reason.NOT_FOUND,
        Reason.ADDRESS_REFUSED,
        Reason.ERROR,
    }
)


def connection_evidence(status: IngestStatus) -> Evidence | None:
    """What an ingest status says to the state machine (``None``: nothing yet).

    ``live`` says nothing by itself: a hung camera still answers RTSP and goes "live" without
    sending a packet. Only access units prove that media flows (the sampler's heartbeat).
    """
    if status.state not in (IngestState.STALLED, IngestState.RETRYING, IngestState.REFUSED):
        return None
    reason = status.reason
    if status.state is IngestState.STALLED or reason is Reason.STALLED:
        problem = Problem.STALLED
    elif reason in _CANNOT_CONNECT or reason is None:
        problem = Problem.CANNOT_CONNECT
    else:
        problem = Problem.NO_MEDIA
    text = reason.value if reason is not None else status.state.value
    if status.detail:
        text = f"{text} ({redact(status.detail)})"
    return ConnectionProblem(status.time, problem, text, status.last_packet)


@dataclass(frozen=True, slots=True)
class _Frame:
    t: float
    data: bytes
    codec: str
    extradata: bytes | None


@dataclass(frozen=True, slots=True)
class _Load:
    t: float
    memory: Memory | None
    baseline: Baseline | None
    reference: bytes | None


@dataclass(frozen=True, slots=True)
class _Approve:
    jpeg: bytes


_Job = _Frame | _Load | _Approve | Evidence


@dataclass(frozen=True, slots=True)
class _Result:
    """An outcome with the monitor's values at that moment (immutable, safe to hand over)."""

    outcome: Outcome
    baseline: Baseline
    news_kind: Kind = Kind.MONITOR


class KeyframeSampler:
    """Follows one camera's stream for the compliance checks (a ``StreamObserver``)."""

    def __init__(self, camera: Camera, owner: Observers) -> None:
        self.camera_id = camera.id
        self.restaurant_id = camera.restaurant_id
        self._owner = owner
        self._lock = threading.Lock()
        self._jobs: deque[_Job] = deque()
        self._busy = False
        self._frame_queued = False
        self._analysis: CameraAnalysis | None = None
        self._decoder: KeyframeDecoder | None = None
        self._decoder_key: tuple[str, bytes | None] | None = None
        self._last_sample: float | None = None
        self._problem = False
        self._media: float | None = None
        """Time of the latest access unit since the last heartbeat."""
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[_Result] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._finishing: asyncio.Task[None] | None = None
        self.samples = 0
        self.skipped = 0
        """Keyframes not analysed because the previous one was still being analysed."""
        self.errors = 0

    # -- StreamObserver (event loop) -------------------------------------------------------

    def on_access_unit(self, au: AccessUnit, info: StreamInfo) -> None:
        """Take a keyframe when the interval has passed and the camera's worker is free."""
        if self._closed:
            return
        now = self._owner.clock()
        self._media = now
        self._problem = False
        if not au.keyframe:
            return
        interval = self._owner.interval_s
        if self._last_sample is not None and now - self._last_sample < interval * (
            INTERVAL_TOLERANCE
        ):
            return
        with self._lock:
            if self._frame_queued:
                self.skipped += 1
                return
            self._frame_queued = True
        self._last_sample = now
        self._submit(_Frame(now, au.data, info.codec, info.extradata))

    def on_status(self, status: IngestStatus) -> None:
        """Connection news from the ingest supervisor."""
        if self._closed:
            return
        evidence = connection_evidence(status)
        log.debug("camera %s: ingest %s -> %s", self.camera_id, status, evidence)
        if evidence is None:
            return
        self._problem = True
        self._submit(evidence)

    # -- lifecycle (event loop) -------------------------------------------------------------

    def start(self) -> None:
        """Load the saved monitor and start ticking (called by the factory, on the loop)."""
        self._loop = asyncio.get_running_loop()
        self._outbox = asyncio.Queue()
        self._tasks = [
            asyncio.create_task(self._load(), name=f"compliance-load-{self.camera_id}"),
            asyncio.create_task(self._write(), name=f"compliance-write-{self.camera_id}"),
            asyncio.create_task(self._tick(), name=f"compliance-tick-{self.camera_id}"),
        ]

    def close(self) -> None:
        """Stop sampling; pending news is still written (the relay stopped pulling)."""
        if self._closed:
            return
        self._closed = True
        self._owner.forget(self)
        if self._loop is not None:
            self._finishing = self._loop.create_task(
                self._finish(), name=f"compliance-close-{self.camera_id}"
            )
            self._owner.track(self._finishing)

    async def wait_closed(self) -> None:
        """Wait until the news pending at ``close()`` is written (at most ``CLOSE_TIMEOUT_S``
        and the last write): the relay hub waits for it before giving the camera's lease up."""
        if self._finishing is not None:
            await asyncio.wait({self._finishing})

    async def _finish(self) -> None:
        for task in self._tasks[::2]:  # the loader and the ticker
            task.cancel()
        writer = self._tasks[1]
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while self._pending() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the worker's flag is set on a pool thread
        writer.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        analysis = self._analysis
        if analysis is not None:
            memory, baseline = analysis.monitor.memory, analysis.monitor.baseline
            with contextlib.suppress(RedisError, OSError, LeaseLost):
                await self._owner.write(
                    self.camera_id,
                    lambda pipe: self._owner.store.stage_monitor(
                        pipe, self.camera_id, memory, baseline
                    ),
                )

    def _pending(self) -> bool:
        return self._busy or (self._outbox is not None and not self._outbox.empty())

    async def approve(self) -> None:
        """A person approved a new reference view: load it into the monitor."""
        jpeg = await self._owner.store.reference_jpeg(self.camera_id)
        if jpeg is not None and not self._closed:
            self._submit(_Approve(jpeg))

    async def _load(self) -> None:
        store = self._owner.store
        while True:
            try:
                memory, baseline = await store.load_monitor(self.camera_id)
                reference = await store.reference_jpeg(self.camera_id)
                await self._owner.write(
                    self.camera_id,
                    lambda pipe: store.stage_held(pipe, [self.camera_id], self._owner.instance),
                )
                self._owner.outage.recovered()
                break
            except LeaseLost:
                await asyncio.sleep(LEASE_RETRY_S)
            except (RedisError, OSError) as err:
                log.debug("camera %s: cannot load its monitor (%s)", self.camera_id, err)
                await asyncio.sleep(self._owner.outage.failed(err))
        self._submit(_Load(self._owner.clock(), memory, baseline, reference))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            now = self._owner.clock()
            if self._problem:
                self._submit(Tick(now))
            elif self._media is not None:
                self._submit(MediaFlowing(self._media))  # when the last packet came
                self._media = None

    # -- the worker (pool thread) -------------------------------------------------------

    def _submit(self, job: _Job) -> None:
        """Queue a job for this camera's worker; start one if none runs (event loop)."""
        with self._lock:
            if isinstance(job, Tick | MediaFlowing):
                # Heartbeats only matter as the latest one: replace a queued one.
                for i, queued in enumerate(self._jobs):
                    if type(queued) is type(job):
                        self._jobs[i] = job
                        break
                else:
                    self._jobs.append(job)
            elif len(self._jobs) < MAX_JOBS:
                self._jobs.append(job)
            else:
                self.skipped += 1
                if isinstance(job, _Frame):
                    self._frame_queued = False
                return
            if self._busy:
                return
            self._busy = True
        self._owner.pool.submit(self._drain)

    def _drain(self) -> None:
        """Run this camera's queued jobs in order (pool thread)."""
        while True:
            with self._lock:
                if not self._jobs or self._closed:
                    self._jobs.clear()
                    self._busy = False
                    return
                job = self._jobs.popleft()
            try:
                result = self._run(job)
            except Exception:
                self.errors += 1
                log.exception("camera %s: analysis failed", self.camera_id)
                result = None
            finally:
                if isinstance(job, _Frame):
                    with self._lock:
                        self._frame_queued = False
            if result is not None and self._loop is not None and self._outbox is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed under us
                    self._loop.call_soon_threadsafe(self._outbox.put_nowait, result)

    def _run(self, job: _Job) -> _Result | None:
        if isinstance(job, _Load):
            analysis = CameraAnalysis(self._owner.config, memory=job.memory, baseline=job.baseline)
            if job.reference is not None:
                try:
                    analysis.use_reference(job.reference)
                except FrameError as err:
                    log.warning("camera %s: reference view unusable (%s)", self.camera_id, err)
            step = analysis.resume(job.t)
            self._analysis = analysis
            outcome = Outcome(step, save=True)
            return _Result(outcome, analysis.monitor.baseline, Kind.HELD)
        current = self._analysis
        if current is None:
            return None  # not loaded yet: evidence before the monitor exists is dropped
        if isinstance(job, _Approve):
            current.approve(job.jpeg)
            return None
        if isinstance(job, _Frame):
            frame = self._decode(job)
            if frame is None:
                outcome = current.observe(MediaFlowing(job.t))
            else:
                self.samples += 1
                outcome = current.sample(job.t, frame)
        else:
            outcome = current.observe(job)
        if not (outcome.step.transitions or outcome.save or outcome.approved or outcome.preview):
            return None
        return _Result(outcome, current.monitor.baseline)

    def _decode(self, job: _Frame) -> av.VideoFrame | None:
        key = (job.codec, job.extradata)
        try:
            if self._decoder is None or self._decoder_key != key:
                self._decoder = KeyframeDecoder(job.codec, job.extradata)
                self._decoder_key = key
            return self._decoder.decode(job.data)
        except FrameError as err:
            self.errors += 1
            log.debug("camera %s: %s", self.camera_id, err)
            return None

    # -- writing news (event loop) --------------------------------------------------------

    async def _write(self) -> None:
        assert self._outbox is not None
        while True:
            result = await self._outbox.get()
            while True:
                try:
                    await self._write_one(result)
                    self._owner.outage.recovered()
                    break
                except LeaseLost:
                    if self._closed:
                        log.info("camera %s: compliance news dropped (lease lost)", self.camera_id)
                        break
                    await asyncio.sleep(LEASE_RETRY_S)
                except (RedisError, OSError) as err:
                    # The outage is logged once for all cameras (``Observers.outage``).
                    log.debug("camera %s: compliance news waits for Redis", self.camera_id)
                    await asyncio.sleep(self._owner.outage.failed(err))

    async def _write_one(self, result: _Result) -> None:
        """Write one outcome's news, evidence, preview and monitor in one atomic batch."""
        outcome = result.outcome
        transitions = outcome.step.transitions
        await self._owner.write(self.camera_id, lambda pipe: self._stage(pipe, result))
        for transition in transitions:
            log.info(
                "camera %s: %s -> %s (%s)",
                self.camera_id,
                transition.from_state.value,
                transition.to_state.value,
                transition.detail,
            )

    def _stage(self, pipe: Any, result: _Result) -> None:
        store = self._owner.store
        outcome = result.outcome
        memory = outcome.step.memory
        if outcome.approved is not None:
            store.stage_reference(
                pipe, self.camera_id, self.restaurant_id, outcome.approved, "auto", memory.last_t
            )
        if result.news_kind is Kind.HELD:
            store.stage_held(pipe, [self.camera_id], self._owner.instance)
            relay = self._owner.instance
            if memory.state is State.UNMONITORED:
                cause, detail = "awaiting_evidence", f"relay {relay} checks the camera's picture"
            else:
                cause, detail = "lease_held", f"relay {relay} analyses the camera"
            news = News(
                kind=Kind.HELD,
                camera=self.camera_id,
                t=memory.last_t or self._owner.clock(),
                to_state=memory.state.value,
                cause=cause,
                detail=detail,
                relay=relay,
            )
            store.stage_news(pipe, news, (), self.restaurant_id)
        for transition in outcome.step.transitions:
            snaps = [s for s in (outcome.snapshot, outcome.last_good) if s is not None]
            news = News(
                kind=Kind.MONITOR,
                camera=self.camera_id,
                t=transition.t,
                from_state=transition.from_state.value,
                to_state=transition.to_state.value,
                cause=transition.cause,
                detail=transition.detail,
                measures=dict(transition.measures),
                snapshot=outcome.snapshot.sha256 if outcome.snapshot else "",
                last_good=outcome.last_good.sha256 if outcome.last_good else "",
                relay=self._owner.instance,
            )
            store.stage_news(pipe, news, snaps, self.restaurant_id)
        if outcome.preview is not None:
            store.stage_preview(pipe, self.camera_id, outcome.preview, memory.last_t or 0.0)
        if outcome.save:
            store.stage_monitor(pipe, self.camera_id, memory, result.baseline)


class LeaseBook(Protocol):
    """The relay's camera leases, as the samplers need them (``kitchencam.relay.claims``)."""

    def fenced(self, camera_id: str) -> FencedBatch:
        """An empty batch fenced by the camera's lease; ``LeaseLost`` if none is held."""
        ...

    def refused(self, camera_id: str) -> None:
        """A fenced write about the camera was refused."""
        ...

    def stage_periodically(self, stage: Callable[[str, FencedBatch], object]) -> None:
        """Have ``stage`` add its writes to every held camera's fenced batch of each interval."""
        ...


class Observers:
    """Makes and holds the relay's samplers: the observer factory the relay hub calls.

    One per relay process. Owns the shared analysis pool and keeps the hold of every camera it
    analyses fresh (which is how the checker knows a camera is monitored): with leases, in the
    relay's one fenced batch per interval (``_stage_hold``), else in one pipeline every
    ``keys.HELD_REFRESH_S``.
    """

    def __init__(
        self,
        store: ComplianceStore,
        instance: str,
        *,
        interval_s: float = 2.0,
        threads: int = 2,
        config: Config | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.instance = instance
        self.interval_s = interval_s
        self.config = config
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="analysis")
        self._samplers: dict[str, KeyframeSampler] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.leases: LeaseBook | None = None
        """The relay's leases: with them every write about a camera is fenced by its lease."""
        # One for every Redis write of this relay's compliance side: an outage is logged once,
        # not once per camera.
        self.outage = RedisOutage(f"relay {instance} compliance", log)

    def use_leases(self, leases: LeaseBook) -> None:
        """Fence every write about a camera by the camera's lease (a relay with leases); the
        holds then ride in the relay's one fenced batch per interval, with the figures."""
        self.leases = leases
        leases.stage_periodically(self._stage_hold)

    def _stage_hold(self, camera_id: str, batch: FencedBatch) -> None:
        if camera_id in self._samplers:
            self.store.stage_held(batch, [camera_id], self.instance)

    async def write(self, camera_id: str, stage: Callable[[Any], object]) -> None:
        """Apply the writes ``stage`` queues about one camera atomically: fenced by the
        camera's lease when the relay has leases (``LeaseLost`` when refused)."""
        if self.leases is None:
            async with self.store.redis.pipeline(transaction=True) as pipe:
                stage(pipe)
                await pipe.execute()
            return
        batch = self.leases.fenced(camera_id)
        stage(batch)
        try:
            await batch.execute()
        except LeaseLost:
            self.leases.refused(camera_id)
            raise

    def make_observer(self, camera: Camera) -> KeyframeSampler:
        """A started sampler for ``camera`` (call on the event loop); stop it with ``close()``."""
        old = self._samplers.get(camera.id)
        if old is not None:
            old.close()
        sampler = KeyframeSampler(camera, self)
        self._samplers[camera.id] = sampler
        sampler.start()
        return sampler

    def sampler(self, camera_id: str) -> KeyframeSampler | None:
        """The live sampler of a camera, if this relay analyses it."""
        return self._samplers.get(camera_id)

    def forget(self, sampler: KeyframeSampler) -> None:
        """A sampler closed: stop holding its camera."""
        if self._samplers.get(sampler.camera_id) is sampler:
            del self._samplers[sampler.camera_id]

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a closing sampler's task until it ends."""
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def run(self) -> None:
        """Refresh holds and follow reference approvals until cancelled; then close all."""
        try:
            await asyncio.gather(self._refresh(), self._follow())
        finally:
            await self.aclose()

    async def _refresh(self) -> None:
        while True:
            try:
                await self._refresh_held()
                self.outage.recovered()
            except (RedisError, OSError) as err:
                await asyncio.sleep(min(self.outage.failed(err), keys.HELD_REFRESH_S))
                continue
            await asyncio.sleep(keys.HELD_REFRESH_S)

    async def _refresh_held(self) -> None:
        """Refresh every analysed camera's hold in one round trip (with leases, the relay's
        fenced batch of each interval carries them: ``_stage_hold``)."""
        if self.leases is None:
            await self.store.refresh_held(list(self._samplers), self.instance)

    async def _follow(self) -> None:
        last = "$"
        while True:
            try:
                entries: Any = await self.store.redis.xread({keys.CHANGES: last}, count=100)
                self.outage.recovered()
                if not entries:
                    await asyncio.sleep(FOLLOW_POLL_S)  # polled: see Checker.read_once
                for _, messages in entries or []:
                    for entry_id, data in messages:
                        last = entry_id
                        if data.get("kind") == "reference" and data.get("op") == "approve":
                            sampler = self._samplers.get(data.get("id", ""))
                            if sampler is not None:
                                await sampler.approve()
            except (RedisError, OSError) as err:
                await asyncio.sleep(self.outage.failed(err))

    async def aclose(self) -> None:
        """Close every sampler, wait for their last writes, and stop the pool."""
        for sampler in list(self._samplers.values()):
            sampler.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self.pool.shutdown)
