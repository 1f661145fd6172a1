"""`hubgate keygen`, `hubgate export`, `hubgate import`: signed bundles for air-gapped hubgates.

Export and import are admin tools run on the server host: they work directly on the Redis named by the
settings (`HUBGATE_REDIS_URL`, else the embedded one in the data dir: shared with a running server when it
is up, started for the command otherwise) and on the data dir's blob store.

    hubgate keygen [--out PREFIX] [--force]
    hubgate export --out FILE --key PRIVATE_KEY [REPO[@REV] ...] [--torch NAME ...] [--all-approved] [--json]
    hubgate import FILE|- --trust-key PUBLIC_KEY [--trust-verdicts] [--json]

Exit codes: 0 done (import: every file approved); 1 import done but some files are quarantined or blocked
by the inside policy; 2 refused or failed (a refused bundle leaves nothing behind).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from proxy.bundle import signing
from proxy.bundle.archive import BundleRefused, ExportIntegrityError, progress_bar
from proxy.bundle.export import ExportError, Selection, describe, parse_repo_spec, plan_export, write_bundle
from proxy.bundle.importer import ImportResult, import_bundle
from proxy.errors import HubgateError
from proxy.models import VerdictStatus
from proxy.settings import Settings

DEFAULT_KEY_PREFIX = "hubgate-bundle"
err = Console(stderr=True, soft_wrap=True)  # messages hold paths and ids: never break them
out = Console()


def add_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register keygen, export and import on the CLI; each handler is `args.func(args) -> int`."""
    p = subparsers.add_parser("keygen", help="create an Ed25519 key pair for signing bundles")
    p.add_argument("--out", default=DEFAULT_KEY_PREFIX, help="writes PREFIX.key (0600) and PREFIX.pub")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(func=keygen_command)

    p = subparsers.add_parser("export", help="write a signed bundle of approved content (air-gap transfer)")
    p.add_argument("repos", nargs="*", metavar="REPO[@REV]", help="org/name[@rev]; datasets/org/name[@rev]")
    p.add_argument("--out", required=True, type=Path, help="the bundle file to write")
    p.add_argument(
        "--key",
        type=Path,
        default=None,
        help=f"signing key (PEM or raw base64; default $HUBGATE_BUNDLE_KEY or ./{DEFAULT_KEY_PREFIX}.key)",
    )
    p.add_argument("--torch", nargs="+", default=[], metavar="NAME", help="approved torch weight names")
    p.add_argument("--all-approved", action="store_true", help="every approved artifact")
    p.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.set_defaults(func=export_command)

    p = subparsers.add_parser("import", help="verify, vet and load a signed bundle")
    p.add_argument("file", help="the bundle file, or - for stdin")
    p.add_argument("--trust-key", required=True, type=Path, help="the exporter's public key (PEM or base64)")
    p.add_argument(
        "--trust-verdicts",
        action="store_true",
        help="use the bundle's scan reports and honour its admin approvals instead of re-scanning "
        "(recorded as such; the inside policy still applies and still blocks)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.set_defaults(func=import_command)


# -- keygen ---------------------------------------------------------------------------------------------


def keygen_command(args: argparse.Namespace) -> int:
    prefix = Path(args.out)
    private, public = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    try:
        key = signing.keygen(private, public, overwrite=args.force)
    except signing.KeyFileError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2
    out.print(f"private key: {private} (keep it on the exporting side, mode 0600)", highlight=False)
    out.print(f"public key:  {public} (give it to the importing side: --trust-key)", highlight=False)
    out.print(f"key id:      {signing.key_id(key)}", highlight=False)
    out.print(f"raw base64:  {signing.public_b64(key)}", highlight=False)
    return 0


# -- shared: Redis + blob store -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[tuple[Any, Any]]:
    """(VerdictStore, BlobStore) for the configured Redis and data dir; never sweeps a live server's tmp/."""
    from proxy.redis_embedded import SOCKET_NAME, EmbeddedRedis
    from proxy.store import BlobStore
    from proxy.verdicts import VerdictStore

    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url:
        live = settings.redis_dir / SOCKET_NAME
        store = None
        if live.exists():
            with contextlib.suppress(HubgateError):
                store = await VerdictStore.connect(f"unix://{live}", settings.redis_prefix, verify=True)
        if store is None:
            embedded = EmbeddedRedis(settings.redis_dir)
            url = await asyncio.to_thread(embedded.start)
            store = await VerdictStore.connect(url, settings.redis_prefix, verify=True)
    else:
        store = await VerdictStore.connect(url, settings.redis_prefix, verify=True)
    blobs = BlobStore(settings.data_dir)
    # Not blobs.startup(): that empties tmp/, which would cut a running server's downloads.
    for directory in (blobs.tmp_dir, blobs.quarantine_dir, blobs.blobs_dir, blobs.pending_dir):
        directory.mkdir(parents=True, exist_ok=True)
    try:
        yield store, blobs
    finally:
        await blobs.drain()
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and not args.json and sys.stderr.isatty()


# -- export ---------------------------------------------------------------------------------------------


def export_command(args: argparse.Namespace) -> int:
    if not (args.repos or args.torch or args.all_approved):
        err.print("[red]error:[/red] " + escape("name REPO[@REV]s, --torch NAMES or --all-approved"), highlight=False)
        return 2
    key_path = args.key or Path(os.environ.get("HUBGATE_BUNDLE_KEY", f"{DEFAULT_KEY_PREFIX}.key"))
    try:
        key = signing.load_private(key_path)
        selection = Selection(
            repos=[parse_repo_spec(r) for r in args.repos], torch=list(args.torch), all_approved=args.all_approved
        )
        summary = asyncio.run(_export(Settings(), selection, key, args.out, _show_progress(args)))
    except (signing.KeyFileError, ExportError, ExportIntegrityError, HubgateError, OSError) as exc:
        message = escape(str(getattr(exc, "message", exc)))
        err.print(f"[red]error:[/red] {message}; no bundle was written", highlight=False)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    for skipped in summary["skipped"]:
        err.print(
            f"[yellow]skipped[/yellow] {escape(skipped['ref'])}: {skipped['status']} "
            "(only approved content is exported)",
            highlight=False,
        )
    table = Table("repo", "commit", "revisions", "files")
    for snap in summary["snapshots"]:
        table.add_row(
            escape(snap["repo"]), snap["commit"][:12], escape(", ".join(snap["revisions"])), str(snap["files"])
        )
    out.print(table)
    out.print(
        f"wrote {args.out}: {summary['blobs']} blobs, {summary['bytes']} bytes, signed by key {summary['key_id']}",
        highlight=False,
    )
    return 0


async def _export(
    settings: Settings, selection: Selection, key: Any, dest: Path, show_progress: bool
) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        hubgate_version = version("hubgate")
    except PackageNotFoundError:
        hubgate_version = "0+unknown"
    async with open_state(settings) as (store, blobs):
        plan = await plan_export(
            store,
            selection,
            blob_path=blobs.blob_path,
            key_id=signing.key_id(key.public_key()),
            hubgate_version=hubgate_version,
        )
    with progress_bar(plan.manifest.total_bytes, "exporting", enabled=show_progress) as advance:
        await asyncio.to_thread(write_bundle, plan, key, dest, advance)
    summary = describe(plan.manifest)
    summary["out"] = str(dest)
    summary["skipped"] = [{"ref": v.ref.human, "id": v.artifact_id, "status": v.status.value} for v in plan.skipped]
    return summary


# -- import ---------------------------------------------------------------------------------------------


def import_command(args: argparse.Namespace) -> int:
    if args.file != "-" and not Path(args.file).is_file():  # before starting Redis for nothing
        err.print(f"[red]error:[/red] {escape(args.file)}: no such bundle file", highlight=False)
        return 2
    try:
        trusted = signing.load_public(args.trust_key)
        result = asyncio.run(_import(Settings(), args, trusted))
    except BundleRefused as exc:
        err.print(f"[red]refused:[/red] {escape(str(exc))}; nothing was imported", highlight=False)
        return 2
    except (signing.KeyFileError, HubgateError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(getattr(exc, 'message', exc)))}", highlight=False)
        return 2
    if args.json:
        print(json.dumps(result_json(result), indent=2))
    else:
        table = Table("artifact", "file", "status", "decided by", "reason")
        for f in result.files:
            reason = f.reasons[0] if f.reasons else ""
            table.add_row(f.artifact_id, escape(f.ref), f.status.value, escape(f.decided_by), escape(reason))
        out.print(table)
        approved = result.count(VerdictStatus.APPROVED)
        out.print(
            f"imported {len(result.files)} files ({approved} approved) from a bundle signed by key "
            f"{result.key_id}; audit entry {result.audit_id}",
            highlight=False,
        )
    return 0 if all(f.status is VerdictStatus.APPROVED for f in result.files) else 1


def result_json(result: ImportResult) -> dict[str, Any]:
    return {
        "key_id": result.key_id,
        "manifest_sha256": result.manifest_sha256,
        "trusted_verdicts": result.trusted_verdicts,
        "audit_id": result.audit_id,
        "files": [
            {
                "id": f.artifact_id,
                "ref": f.ref,
                "status": f.status.value,
                "decided_by": f.decided_by,
                "outside_decided_by": f.outside_decided_by,
                "reasons": f.reasons,
            }
            for f in result.files
        ],
    }


async def _import(settings: Settings, args: argparse.Namespace, trusted: Any) -> ImportResult:
    from proxy.policy_state import PolicyState

    policy = PolicyState(settings.policy).current
    scanner = None
    if not args.trust_verdicts:
        from proxy.scan.pool import ScanPool

        scanner = ScanPool(
            workers=settings.scan_workers, timeout=settings.scan_timeout, memory_mb=settings.scan_memory_mb
        )
    try:
        async with open_state(settings) as (store, blobs):
            with contextlib.ExitStack() as files:
                if args.file == "-":
                    src, total, name = sys.stdin.buffer, 0, "<stdin>"
                else:
                    path = Path(args.file)
                    src, total, name = files.enter_context(path.open("rb")), path.stat().st_size, path.name
                with progress_bar(total, "verifying", enabled=_show_progress(args) and total > 0) as advance:
                    return await import_bundle(
                        src,
                        trusted=trusted,
                        store=store,
                        blobs=blobs,
                        policy=policy,
                        scanner=scanner,
                        trust_verdicts=args.trust_verdicts,
                        revision_ttl=settings.revision_ttl,
                        actor=f"cli:{os.environ.get('USER', 'unknown')}",
                        source_name=name,
                        progress=advance,
                    )
    finally:
        if scanner is not None:
            await scanner.close()
