"""The seam to the external pickle engines, fickling and modelscan, run as libraries inside the worker.

They vote; our allowlist engine decides what is *safe*. Their findings are merged with their engine name.
Where they disagree with ours on a pickle stream, an `engines.disagree` finding (medium) lets policy decide:
if ours passed a stream that they flag, their findings are kept for the record but capped at low so that
ours stays authoritative for the verdict; if they agree, their severities stand. An engine crash is an
`engine.error` finding (low when ours finished, since ours alone decides; the verdict is `error` only when
ours could not finish).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from functools import cache

from proxy.models import Finding, Severity
from proxy.scan.pickle import PickleScan
from proxy.scan.state import ScanState

logging.getLogger("modelscan").setLevel(logging.CRITICAL)  # it logs every parse error at ERROR

FICKLING = "fickling"
MODELSCAN = "modelscan"


@cache
def engine_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    try:
        import fickling

        versions[FICKLING] = str(getattr(fickling, "__version__", "unknown"))
    except Exception:  # an engine that cannot even import is reported by its absence
        pass
    try:
        from modelscan._version import __version__ as ms_version

        versions[MODELSCAN] = str(ms_version)
    except Exception:
        pass
    return versions


def preload() -> None:
    """Import the engines (used by the forkserver so each scan does not pay for it)."""
    try:
        import fickling.analysis
        import fickling.fickle
        import fickling.ml  # noqa: F401
        import modelscan.modelscan
        import modelscan.settings
        import modelscan.tools.picklescanner  # noqa: F401
    except Exception:
        pass


@cache
def _fickling_analyzer() -> object:
    """fickling's default analyses with its ML allowlist in place of the generic "non-standard import" and
    "any call is an eval" rules, which flag every torch state dict and would drown the signal."""
    from fickling.analysis import Analyzer
    from fickling.ml import MLAllowlist

    noisy = {"NonStandardImports", "OvertlyBadEvals", "UnusedVariables"}
    keep = [a for a in Analyzer.default_instance.analyses if type(a).__name__ not in noisy]
    return Analyzer([*keep, MLAllowlist()])


def _fickling(data: bytes, location: str) -> list[Finding]:
    from fickling.analysis import Severity as FS
    from fickling.fickle import StackedPickle

    # fickling's Severity is not hashable: map by name
    mapping = {
        FS.POSSIBLY_UNSAFE.name: Severity.LOW,
        FS.SUSPICIOUS.name: Severity.MEDIUM,
        FS.LIKELY_UNSAFE.name: Severity.HIGH,
        FS.LIKELY_OVERTLY_MALICIOUS.name: Severity.CRITICAL,
        FS.OVERTLY_MALICIOUS.name: Severity.CRITICAL,
    }
    out: list[Finding] = []
    stacked = StackedPickle.load(io.BytesIO(data), fail_on_decode_error=False)
    for pickled in stacked:
        results = _fickling_analyzer().analyze(pickled)  # type: ignore[attr-defined]
        for r in results.results:
            sev = mapping.get(r.severity.name)
            if sev is None:
                continue
            rule = f"fickling.{r.analysis_name or 'analysis'}"
            out.append(Finding(engine=FICKLING, severity=sev, rule=rule, message=str(r)[:500], location=location))
        if getattr(pickled, "has_invalid_opcode", False):
            out.append(
                Finding(
                    engine=FICKLING,
                    severity=Severity.MEDIUM,
                    rule="fickling.invalid-opcode",
                    message="invalid opcode sequence",
                    location=location,
                )
            )
    return out


def _modelscan(data: bytes, location: str) -> tuple[list[Finding], list[str]]:
    import modelscan.modelscan  # noqa: F401  (its package has an import cycle when entered elsewhere)
    from modelscan.model import Model
    from modelscan.settings import DEFAULT_SETTINGS
    from modelscan.tools.picklescanner import scan_pickle_bytes

    mapping = {"CRITICAL": Severity.CRITICAL, "HIGH": Severity.HIGH, "MEDIUM": Severity.MEDIUM, "LOW": Severity.LOW}
    model = Model(location or "stream.pkl", io.BytesIO(data))
    results = scan_pickle_bytes(model, DEFAULT_SETTINGS)
    out = []
    for issue in results.issues:
        details = issue.details
        target = f"{getattr(details, 'module', '?')}.{getattr(details, 'operator', '?')}"
        out.append(
            Finding(
                engine=MODELSCAN,
                severity=mapping.get(issue.severity.name, Severity.HIGH),
                rule="modelscan.unsafe-operator",
                message=f"unsafe operator {target}",
                location=location,
            )
        )
    errors = [str(getattr(e, "message", e)) for e in results.errors]
    return out, errors


def check_pickle(data: bytes, *, location: str, ours: PickleScan, state: ScanState) -> None:
    """Run both engines on one pickle stream and merge their findings into `state`."""
    state.engines.update(engine_versions())
    for name in (FICKLING, MODELSCAN):
        try:
            # both engines print warnings; keep stdout clean for `hubgate scan --json`
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore")
                errors: list[str] = []
                if name == FICKLING:
                    theirs = _fickling(data, location)
                else:
                    theirs, errors = _modelscan(data, location)
        except Exception as exc:  # a third-party crash is data, not our crash
            sev = Severity.LOW if ours.complete else Severity.MEDIUM
            state.add(sev, "engine.error", f"{name} crashed: {type(exc).__name__}: {exc}"[:500], location, name)
            continue
        for err in errors:
            sev = Severity.LOW if ours.complete else Severity.MEDIUM
            state.add(sev, "engine.error", f"{name} could not parse: {err}"[:500], location, name)
        theirs_flag = any(f.severity.rank >= Severity.HIGH.rank for f in theirs)
        if theirs_flag and not ours.flagged:
            theirs = [
                f.model_copy(update={"severity": Severity.LOW, "message": f"[{f.severity.value}] {f.message}"})
                if f.severity.rank > Severity.LOW.rank
                else f
                for f in theirs
            ]
            state.add(
                Severity.MEDIUM,
                "engines.disagree",
                f"{name} flags this pickle; the hubgate allowlist passes it",
                location,
            )
        elif ours.flagged and not theirs_flag:
            state.add(
                Severity.MEDIUM,
                "engines.disagree",
                f"hubgate flags this pickle; {name} passes it",
                location,
            )
        state.findings.extend(theirs)
