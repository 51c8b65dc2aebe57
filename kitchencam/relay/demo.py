"""Demo cameras: a simulated kitchen drawn and encoded to H.264 in-process.

A demo camera is registered like any camera, with an address on the reserved ``demo.invalid``
domain (RFC 6761: ``.invalid`` never resolves), e.g. ``rtsp://kitchen-1.demo.invalid/live``.
Only a process started with ``KITCHENCAM_DEMO`` gets a :class:`DemoAddressPolicy`; that policy
accepts those names without resolving them, and only then does the supervisor run a
:class:`DemoWorker` for them instead of an RTSP pull. With demo off, the ordinary policy
refuses the name as unresolvable and nothing here ever runs: the choice is made from the
operator's setting, never from anything a camera's owner can write.

The worker keeps the ingest worker's contract (a thread, the same ``IngestSink`` callbacks,
``start``/``stop``/``join``), so its access units flow through the same relay, viewers and
compliance sampler as a real camera's. ``/live-covered`` cameras show a near-uniform cloth over
the lens for ``COVERED_S`` of every ``COVER_PERIOD_S``, which the checker flags as ``covered``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Final

import av
import numpy as np
import numpy.typing as npt

from kitchencam.addresses import AddressPolicy, IPAddress, StreamAddress
from kitchencam.relay import h264
from kitchencam.relay.ingest import IngestError, IngestSink, SourceWorker, stream_info
from kitchencam.relay.media import VIDEO_CLOCK_HZ, AccessUnit, Reason, StreamInfo

log = logging.getLogger(__name__)

DEMO_DOMAIN: Final = "demo.invalid"
DEMO_IP: Final = ipaddress.ip_address("192.0.2.1")
"""What the demo policy answers for a demo name (TEST-NET-1, RFC 5737): never connected to."""
COVERED_PATH: Final = "/live-covered"

WIDTH: Final = 640
HEIGHT: Final = 360
FPS: Final = 15
GOP_FRAMES: Final = FPS  # one keyframe a second
BIT_RATE_BPS: Final = 600_000
COVER_PERIOD_S: Final = 180.0
COVERED_S: Final = 40.0
COVER_START_S: Final = 100.0
"""Within each period (wall clock), the lens is covered from 100 s to 140 s."""
NOISE_BANK: Final = 6
NOISE_SIGMA: Final = 2.5
"""Sensor noise in grey levels: a real camera's picture is never bit-identical twice, and the
checker's frozen test relies on that."""

Plane = npt.NDArray[np.uint8]

# A 3 x 5 bitmap font for the burnt-in clock, as cameras draw one.
_GLYPHS: Final = MappingProxyType(
    {
        "0": "111101101101111",
        "1": "010110010010111",
        "2": "111001111100111",
        "3": "111001111001111",
        "4": "101101111001001",
        "5": "111100111001111",
        "6": "111100111101111",
        "7": "111001010010010",
        "8": "111101111101111",
        "9": "111101111001111",
        ":": "000010000010000",
    }
)
GLYPH_SCALE: Final = 3
CLOCK_BOX_LUMA: Final = 60
CLOCK_DIGIT_LUMA: Final = 190
"""A modest on-screen clock: a large high-contrast one alone carries a third of a kitchen's
detail, and a covered lens must look featureless next to the scene."""


def is_demo_address(address: StreamAddress) -> bool:
    """Whether ``address`` names a demo camera (``rtsp://NAME.demo.invalid/...``)."""
    head, dot, domain = address.host.partition(".")
    return address.scheme == "rtsp" and bool(head) and bool(dot) and domain == DEMO_DOMAIN


@dataclass(frozen=True, slots=True)
class DemoAddressPolicy(AddressPolicy):
    """The address policy of a demo process: demo names pass unresolved, all else as usual."""

    async def check(self, address: StreamAddress) -> IPAddress:
        """``DEMO_IP`` for a demo name (served in-process, never connected to); otherwise the
        ordinary check."""
        if is_demo_address(address):
            return DEMO_IP
        return await AddressPolicy.check(self, address)


def serves_demo(policy: AddressPolicy, address: StreamAddress) -> bool:
    """Whether the relay should run the demo source for ``address`` under ``policy``."""
    return isinstance(policy, DemoAddressPolicy) and is_demo_address(address)


@dataclass(frozen=True, slots=True)
class CoverSchedule:
    """When a demo camera's lens is covered: ``[start, start + length)`` of every period."""

    period_s: float = COVER_PERIOD_S
    start_s: float = COVER_START_S
    length_s: float = COVERED_S

    def covered(self, t: float) -> bool:
        """Whether the lens is covered at time ``t`` (seconds)."""
        phase = (t % self.period_s) - self.start_s
        return 0.0 <= phase < self.length_s


class DemoScene:
    """Draws a kitchen: tiled wall, counter, stove with flames, a cook walking, a clock.

    Pure apart from its private noise generator; ``frame(t, wall)`` runs on the worker thread.
    """

    def __init__(self, seed: int, cover: CoverSchedule | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        self._cover = cover
        self._phase = (seed % 1000) / 1000.0 * 2 * np.pi
        self._speed = 0.6 + (seed % 7) / 10.0
        self._y, self._u, self._v = self._background(seed)
        noise = self._rng.normal(0.0, NOISE_SIGMA, (NOISE_BANK, HEIGHT, WIDTH))
        self._noise = np.round(noise).astype(np.int16)

    @staticmethod
    def _background(seed: int) -> tuple[Plane, Plane, Plane]:
        y = np.full((HEIGHT, WIDTH), 190, np.uint8)
        tile = 32 + seed % 9
        y[::tile, :] = 120
        y[:, ::tile] = 120
        y[1::tile, :] = 140
        y[:, 1::tile] = 140
        counter = int(HEIGHT * 0.62)
        ramp = np.linspace(130, 170, WIDTH).astype(np.uint8)
        y[counter:, :] = ramp
        y[counter : counter + 6, :] = 215  # the counter's edge catches the light
        # Stove, pans and shelves.
        y[counter + 30 : counter + 110, 60:300] = 45
        for cx in (120, 230):
            yy, xx = np.ogrid[:HEIGHT, :WIDTH]
            pan = (yy - (counter + 25)) ** 2 + (xx - cx) ** 2 < 38**2
            y[pan & (yy < counter + 30)] = 70
        for shelf in (70, 130):
            y[shelf : shelf + 8, 380:620] = 95
            for jar in range(390, 610, 45):
                y[shelf - 40 : shelf, jar : jar + 28] = 160 + (jar // 45 % 3) * 20
        u = np.full((HEIGHT // 2, WIDTH // 2), 132, np.uint8)
        v = np.full((HEIGHT // 2, WIDTH // 2), 124, np.uint8)
        u[counter // 2 :, :] = 128
        v[counter // 2 :, :] = 128
        return y, u, v

    def covered(self, wall: float) -> bool:
        """Whether the lens is covered at wall-clock time ``wall``."""
        return self._cover is not None and self._cover.covered(wall)

    def frame(self, t: float, wall: float) -> av.VideoFrame:
        """The picture at ``t`` seconds of media time, its clock showing ``wall`` (local time)."""
        if self.covered(wall):
            y, u, v = self._cloth()
        else:
            y, u, v = self._y.copy(), self._u.copy(), self._v.copy()
            self._draw_cook(y, u, v, t)
            self._draw_flames(y, u, v, t)
        # A random pattern of the bank, rolled by a random number of rows: never the same
        # noise twice in a row, so no two samples are bit-identical (as with a real sensor).
        pattern = self._noise[self._rng.integers(NOISE_BANK)]
        noisy = y.astype(np.int16) + np.roll(pattern, int(self._rng.integers(HEIGHT)), axis=0)
        y = np.clip(noisy, 16, 235).astype(np.uint8)
        _draw_clock(y, time.strftime("%H:%M:%S", time.localtime(wall)))
        return av.VideoFrame.from_ndarray(
            np.concatenate([y, u.reshape(-1, WIDTH), v.reshape(-1, WIDTH)]), format="yuv420p"
        )

    def _cloth(self) -> tuple[Plane, Plane, Plane]:
        """A cloth over the lens: dull, almost uniform, lit from one side."""
        shade = np.linspace(84, 76, HEIGHT).astype(np.uint8)[:, None]
        y = np.repeat(shade, WIDTH, axis=1)
        u = np.full((HEIGHT // 2, WIDTH // 2), 118, np.uint8)
        v = np.full((HEIGHT // 2, WIDTH // 2), 140, np.uint8)
        return y, u, v

    def _draw_cook(self, y: Plane, u: Plane, v: Plane, t: float) -> None:
        x = int(WIDTH * 0.45 + WIDTH * 0.3 * np.sin(self._speed * t * 0.5 + self._phase))
        top = int(HEIGHT * 0.22) + int(6 * np.sin(t * 4.0))
        x0, x1 = max(x - 40, 0), min(x + 40, WIDTH)
        y[top + 50 : top + 200, x0:x1] = 228  # white coat
        y[top + 50 : top + 200, max(x - 3, 0) : min(x + 3, WIDTH)] = 200  # buttons line
        y[top + 8 : top + 48, max(x - 18, 0) : min(x + 18, WIDTH)] = 150  # face
        y[top : top + 14, max(x - 22, 0) : min(x + 22, WIDTH)] = 232  # toque
        arm = int(30 * np.sin(t * 3.0 + self._phase))
        ay = top + 90 + arm
        y[ay : ay + 14, min(x + 40, WIDTH) : min(x + 95, WIDTH)] = 225
        face = (
            slice((top + 8) // 2, (top + 48) // 2),
            slice(max(x - 18, 0) // 2, min(x + 18, WIDTH) // 2),
        )
        u[face] = 112
        v[face] = 150

    def _draw_flames(self, y: Plane, u: Plane, v: Plane, t: float) -> None:
        counter = int(HEIGHT * 0.62)
        for cx in (120, 230):
            height = 14 + int(8 * abs(np.sin(t * 7.0 + cx)))
            y[counter + 30 - height : counter + 30, cx - 30 : cx + 30 : 6] = 235
            flame = (
                slice((counter + 30 - height) // 2, (counter + 30) // 2),
                slice((cx - 30) // 2, (cx + 30) // 2),
            )
            u[flame] = 90
            v[flame] = 180


def _draw_clock(y: Plane, text: str) -> None:
    """Burn ``text`` into the top left corner, light on a darker box."""
    s = GLYPH_SCALE
    y[6 : 6 + 7 * s, 6 : 10 + len(text) * 4 * s] = CLOCK_BOX_LUMA
    for i, ch in enumerate(text):
        bits = np.array([c == "1" for c in _GLYPHS[ch]]).reshape(5, 3)
        glyph = np.kron(bits, np.ones((s, s), bool))
        top, left = 6 + s, 8 + i * 4 * s
        y[top : top + 5 * s, left : left + 3 * s][glyph] = CLOCK_DIGIT_LUMA


class DemoEncoder:
    """Encodes demo pictures to Annex-B H.264 Main: no B-frames, an IDR with SPS/PPS every
    second."""

    def __init__(self) -> None:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = WIDTH, HEIGHT
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, FPS)
        ctx.framerate = Fraction(FPS, 1)
        ctx.gop_size = GOP_FRAMES
        ctx.max_b_frames = 0
        ctx.bit_rate = BIT_RATE_BPS
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "main",
            # CABAC on: ultrafast alone quietly gives Constrained Baseline, whose level the
            # relay's answer must then match exactly; Main is what cameras send anyway.
            "x264-params": (
                f"keyint={GOP_FRAMES}:min-keyint={GOP_FRAMES}:scenecut=0:repeat-headers=1:"
                "bframes=0:cabac=1:threads=1"
            ),
        }
        self._ctx = ctx
        self._index = 0

    def encode(self, frame: av.VideoFrame) -> Iterator[tuple[bytes, bool, int]]:
        """Encode one picture; yields ``(annexb, keyframe, index)`` per coded picture."""
        frame.pts = self._index
        frame.time_base = Fraction(1, FPS)
        self._index += 1
        for packet in self._ctx.encode(frame):
            yield bytes(packet), bool(packet.is_keyframe), int(packet.pts or 0)


def coded_pictures(
    scene: DemoScene, wall: Callable[[float], float]
) -> Iterator[tuple[float, AccessUnit, StreamInfo]]:
    """The scene encoded, without end and as fast as asked: ``(media time, access unit,
    stream info)``; keyframes carry SPS/PPS. ``wall`` gives the clock's time at a media time.
    """
    encoder = DemoEncoder()
    cache = h264.ParameterSetCache()
    info: StreamInfo | None = None
    ticks = VIDEO_CLOCK_HZ // FPS
    n = 0
    while True:
        t = n / FPS
        n += 1
        for data, _key, index in encoder.encode(scene.frame(t, wall(t))):
            fixed = cache.fix(data)
            if info is None:
                info = stream_info("h264", cache, None)
            au = AccessUnit(
                data=fixed.data,
                keyframe=fixed.join_point,
                pts=index * ticks,
                arrival=time.monotonic(),
            )
            yield t, au, info


def demo_seed(address: StreamAddress) -> int:
    """A stable scene seed for a demo camera's name."""
    return zlib.crc32(address.host.encode())


def scene_for(address: StreamAddress) -> DemoScene:
    """The scene of a demo camera: its own layout; covered now and then on ``/live-covered``."""
    cover = CoverSchedule() if address.path.startswith(COVERED_PATH) else None
    return DemoScene(demo_seed(address), cover)


class DemoWorker(SourceWorker):
    """Produces one demo camera's access units on a dedicated thread, paced at ``FPS``.

    Same contract as :class:`kitchencam.relay.ingest.IngestWorker`: output goes to the sink on
    the loop, the future ends with the ``IngestError`` that stopped it.
    """

    THREAD_PREFIX = "demo"

    def __init__(
        self,
        camera_id: str,
        scene: DemoScene,
        loop: asyncio.AbstractEventLoop,
        sink: IngestSink,
    ) -> None:
        super().__init__(camera_id, loop, sink)
        self._scene = scene

    def _work(self) -> None:
        self._produce()

    def _error(self, err: BaseException) -> BaseException:
        log.warning("demo camera %s: %s", self.camera_id, type(err).__name__)
        return IngestError(Reason.ERROR, f"demo source failed ({type(err).__name__})")

    def _produce(self) -> None:
        """Runs on the demo thread: draw, encode and hand over, in real time."""
        start = time.monotonic()
        announced = False
        for t, au, info in coded_pictures(self._scene, lambda _t: time.time()):
            if self._quit.wait(max(0.0, start + t - time.monotonic())):
                return
            au.arrival = time.monotonic()
            if not announced:
                self._loop.call_soon_threadsafe(self._sink.on_session, info)
                announced = True
            self._loop.call_soon_threadsafe(self._sink.on_unit, au, False)
