"""Type stubs of dftrace's extension module (the implementation of `dftrace`)."""

from typing import Any, TypedDict

__version__: str

class DftraceError(Exception):
    """A configuration or telemetry error; the message names what was wrong
    and what is accepted."""

class ShutdownReport(TypedDict):
    ended: int
    exported: int
    failed: int
    dropped: int
    summary: str

class PhysicalOptimizerRuleCapsule:
    """What `SessionContext.add_physical_optimizer_rule` takes."""

    def __datafusion_physical_optimizer_rule__(self) -> object: ...

class Telemetry:
    """The process's dftrace telemetry, from `dftrace.init`."""

    @property
    def preset(self) -> str: ...
    def physical_optimizer_rule(self) -> PhysicalOptimizerRuleCapsule: ...
    def flush(self) -> bool:
        """Waits until every ended query's spans are handed to the exporter."""
    def shutdown(self) -> ShutdownReport:
        """Flushes and stops the exporters; later calls return an empty report."""

def init(
    preset: str | None,
    config_file: str | None,
    settings: dict[str, Any] | None,
) -> Telemetry: ...
