"""Call metrics: a durable SQLite store fed by the daemon, reports, exports and charts.

The daemon sees every moment of a call first-hand (ring, answer, hold, hang-up,
wrap-up end) and records it through :class:`offhook.metrics.store.CallRecorder`;
`offhook report` reads one or more stores or exports with :mod:`offhook.metrics.report`.
Durations always come from the monotonic clock, dates from the wall clock.
"""

from offhook.metrics.store import CallRecorder, MetricsError, default_db_path

__all__ = ["CallRecorder", "MetricsError", "default_db_path"]
