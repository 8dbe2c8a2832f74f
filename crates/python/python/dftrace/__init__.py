"""dftrace for datafusion-python: operator-level OpenTelemetry traces.

One call sets up telemetry, one call instruments a session::

    import dftrace
    from datafusion import SessionContext

    telemetry = dftrace.init(preset="production-lean")
    ctx = SessionContext()
    dftrace.instrument(ctx)
    ctx.sql("SELECT 1").collect()
    telemetry.shutdown()  # flushes every span

``init`` reads the same configuration layers as a Rust host: the preset,
the file (``config_file`` or ``DFTRACE_CONFIG``), the ``DFTRACE_*`` and
standard ``OTEL_*`` environment variables, then the settings given here
(highest). Settings are dotted paths (``{"export.sink": "file"}``) or
keywords with ``__`` for the dots (``export__sink="file"``).

Every statement gets a ``dftrace.query`` root span with an operator span per
physical operator under it (typed metrics, rows, self time) and the metrics
summary on the root; literals and data values are masked as in Rust. What a
Python session cannot give is listed in the package README.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from ._dftrace import DftraceError, PhysicalOptimizerRuleCapsule, Telemetry, __version__
from ._dftrace import init as _init

__all__ = [
    "DftraceError",
    "PhysicalOptimizerRuleCapsule",
    "Telemetry",
    "init",
    "instrument",
    "__version__",
]

_current: Telemetry | None = None


def init(
    preset: str | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    settings: dict[str, Any] | None = None,
    **overrides: Any,
) -> Telemetry:
    """Reads the configuration, starts dftrace's telemetry and returns its handle.

    Args:
        preset: ``"production-lean"`` (the default), ``"maximal-no-data"`` or
            ``"maximal"``; wins over ``DFTRACE_PRESET`` and the file.
        config_file: a TOML or JSON file (``.json``); wins over
            ``DFTRACE_CONFIG``.
        settings: dotted setting paths to values, e.g.
            ``{"export.sink": "file", "rules.preview_limit": 3}``.
        **overrides: the same, with ``__`` for each dot
            (``export__sink="file"``); they win over ``settings``.

    Raises:
        DftraceError: a setting, preset or file is wrong (the message names
            it and what is accepted), or telemetry is already running in this
            process.

    Telemetry is shut down (flushed) at interpreter exit if ``shutdown`` was
    not called.
    """
    global _current
    merged: dict[str, Any] = dict(settings or {})
    merged.update({key.replace("__", "."): value for key, value in overrides.items()})
    config_path = os.fspath(config_file) if config_file is not None else None
    telemetry = _init(preset, config_path, merged)
    # As a Rust host's telemetry flushes when dropped: the spans of the last
    # queries are not lost when the application forgets shutdown().
    atexit.register(telemetry.shutdown)
    _current = telemetry
    return telemetry


def instrument(ctx: Any, telemetry: Telemetry | None = None) -> Any:
    """Instruments a ``datafusion.SessionContext``; returns it.

    Adds dftrace's physical optimizer rule to the session (after the rules
    it already has): every statement the session runs from then on is
    traced. The session's own planner, tables and settings are untouched;
    instrumenting a session twice traces each operator once.

    Args:
        ctx: the session.
        telemetry: the handle ``init`` returned; by default the last one.

    Raises:
        DftraceError: ``init`` has not been called.
    """
    telemetry = telemetry or _current
    if telemetry is None:
        raise DftraceError("dftrace.instrument: call dftrace.init() first")
    ctx.add_physical_optimizer_rule(telemetry.physical_optimizer_rule())
    return ctx
