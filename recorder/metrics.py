"""The recorder's Prometheus metrics (the dashboards and alerts read these names)."""

from __future__ import annotations

from prometheus_client import Counter

SEGMENTS = Counter("visitbridge_recording_segments", "Recorded segments closed and hashed")
BYTES = Counter("visitbridge_recording_bytes", "Bytes of closed, hashed recording segments")
FAILURES = Counter("visitbridge_recording_failures", "Recording failures, by reason", ["reason"])
for _reason in ("disk_full", "io_error", "permission", "internal_error", "seal", "recovery"):
    FAILURES.labels(_reason)  # series exist at 0, so the alert and panel have data
GAP_SECONDS = Counter("visitbridge_recording_gap_seconds",
                      "Seconds of media lost to the recording (crash recovery, failures)")
