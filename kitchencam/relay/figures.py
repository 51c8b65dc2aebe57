"""Per-camera figures of this relay for ``/metrics``, read from the streams at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kitchencam.relay.hub import RelayHub
from kitchencam.relay.media import IngestState


class RelayCollector(Collector):
    """Prometheus families for every camera pulled by one relay hub."""

    def __init__(self, hub: RelayHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """One sample per camera and figure."""
        now = time.monotonic()
        labels = ["camera"]
        up = GaugeMetricFamily(
            "kitchencam_camera_live", "1 when the camera's video flows, else 0.", labels=labels
        )
        fps = GaugeMetricFamily("kitchencam_camera_fps", "Pictures per second.", labels=labels)
        bitrate = GaugeMetricFamily(
            "kitchencam_camera_bitrate_bps", "Video bit rate.", labels=labels
        )
        gop = GaugeMetricFamily(
            "kitchencam_camera_keyframe_interval_seconds", "Time between keyframes.", labels=labels
        )
        age = GaugeMetricFamily(
            "kitchencam_camera_last_packet_age_seconds", "Time since the last video.", labels=labels
        )
        viewers = GaugeMetricFamily(
            "kitchencam_camera_viewers", "WebRTC viewers of the camera.", labels=labels
        )
        reconnects = CounterMetricFamily(
            "kitchencam_camera_reconnects", "Upstream reconnections.", labels=labels
        )
        dropped = CounterMetricFamily(
            "kitchencam_camera_dropped_units",
            "Pictures dropped for viewers that fell behind.",
            labels=labels,
        )
        for stream in self._hub.streams():
            cam = [stream.camera_id]
            live = stream.status is not None and stream.status.state is IngestState.LIVE
            up.add_metric(cam, 1.0 if live else 0.0)
            figures = stream.figures(now)
            fps.add_metric(cam, float(figures["fps"]))  # type: ignore[arg-type]
            bitrate.add_metric(cam, float(figures["bitrate_bps"]))  # type: ignore[arg-type]
            if stream.keyframe_interval_s is not None:
                gop.add_metric(cam, stream.keyframe_interval_s)
            if stream.last_packet_monotonic is not None:
                age.add_metric(cam, now - stream.last_packet_monotonic)
            viewers.add_metric(cam, float(stream.viewers))
            reconnects.add_metric(cam, float(stream.reconnects))
            dropped.add_metric(cam, float(stream.dropped()))
        total = GaugeMetricFamily("kitchencam_viewers", "WebRTC viewers of this process.")
        total.add_metric([], float(self._hub.viewers.count))
        yield from (up, fps, bitrate, gop, age, viewers, reconnects, dropped, total)
        yield from self._leases()

    def _leases(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        claims = self._hub.claims
        held = GaugeMetricFamily("kitchencam_relay_leases_held", "Camera leases this relay holds.")
        held.add_metric([], float(len(claims.held)))
        relays = GaugeMetricFamily(
            "kitchencam_relay_live_relays", "Live relays, as this relay sees them."
        )
        relays.add_metric([], float(sum(claims.capacities().values())))
        yield from (held, relays)
        for name, text, value in (
            ("claims", "Camera leases claimed.", claims.claimed),
            ("losses", "Camera leases lost to another relay.", claims.lost),
            ("hand_overs", "Camera leases handed over to balance relays.", claims.handed_over),
        ):
            counter = CounterMetricFamily(f"kitchencam_relay_lease_{name}", text)
            counter.add_metric([], float(value))
            yield counter
