"""Content scanning: sniff the format, run every engine that applies, merge findings into a ScanReport.

Public API: `scan_path` (synchronous, one file), `ScanPool` (async, worker processes with timeouts and memory
caps; `proxy.scan.pool`), `ScanLimits` (`proxy.scan.limits`), `scan_command` (CLI; `proxy.scan.command`).
"""

from proxy.scan.limits import DEFAULT_LIMITS, ScanLimits
from proxy.scan.scanner import hubgate_version, scan_path

__all__ = ["DEFAULT_LIMITS", "ScanLimits", "hubgate_version", "scan_path"]
