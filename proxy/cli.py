"""The `hubgate` command: serve | scan | policy check | quarantine | approve | reject | revoke | verdict | audit.

Admin commands talk to a running server's admin API (`--url`, token from HUBGATE_ADMIN_TOKEN). Exit codes:
0 success (scan: clean), 1 findings / not clean, 2 error (the message says what happened and what to do).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from proxy.errors import HubgateError

DEFAULT_URL = "http://127.0.0.1:8080"
out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages hold paths and ids: never break them


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from proxy.logs import configure_logging
    from proxy.settings import Settings
    from proxy.web.app import create_app
    from proxy.web.workflow import install_sighup

    overrides: dict[str, Any] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.host is not None:
        overrides["host"] = args.host
    settings = Settings(**overrides)
    configure_logging(json_lines=settings.log_json)
    app = create_app(settings)
    app.on_startup.append(install_sighup)  # `kill -HUP <pid>` reloads the policy file
    listening = f"hubgate listening on http://{settings.host}:{settings.port} (data in {settings.data_dir})"
    try:
        # run_app calls `print` once the socket is bound, so the line is never shown for a port that failed.
        web.run_app(app, host=settings.host, port=settings.port, print=lambda _: err.print(listening), access_log=None)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        raise HubgateError(
            f"hubgate: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}; "
            "stop the other server or choose another port (--port or HUBGATE_PORT)"
        ) from None
    return 0


def _scan(args: argparse.Namespace) -> int:
    from proxy.scan.command import scan_command

    return scan_command([Path(p) for p in args.paths], as_json=args.json)


def _policy_check(args: argparse.Namespace) -> int:
    from proxy.policy.command import check_command

    return check_command(Path(args.file) if args.file else None, as_json=args.json)


def _client(args: argparse.Namespace) -> Any:
    from proxy.admin_client import AdminClient

    return AdminClient(args.url, admin_name=getattr(args, "admin", None))


def _verdict_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "status", "ref", "reasons"):
        table.add_column(column, overflow="fold")
    for row in rows:
        # Text, not markup: reasons quote rule ids in brackets ("[pickle.dangerous-global at x@2]").
        table.add_row(*(Text(v) for v in (row["id"], row["status"], row["ref"], "; ".join(row.get("reasons") or []))))
    return table


def _quarantine(args: argparse.Namespace) -> int:
    rows = _client(args).call("GET", "/admin/api/artifacts", query={"status": args.status})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        out.print(_verdict_table(rows, f"{args.status} artifacts ({len(rows)})"))
    return 0


def _decide(action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        client = _client(args)
        row = client.call("POST", client.artifact_path(args.id) + f"/{action}", body={"reason": args.reason})
        if args.json:
            print(json.dumps(row, indent=2))
        else:
            out.print(f"{row['id']} {row['status']} ({row['ref']}) by {row['decided_by']}: {args.reason}", markup=False)
        return 0

    return run


def _verdict(args: argparse.Namespace) -> int:
    client = _client(args)
    row = client.call("GET", "/admin/api/lookup", query={"ref": args.id})
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    out.print(_verdict_table([row], "verdict"))
    card = row.get("card") or {}
    if card:
        out.print(
            f"  license: {card.get('license')} -> {', '.join(card.get('licenses') or []) or 'none'}", markup=False
        )
    scan = row.get("scan") or {}
    for finding in scan.get("findings", []):
        out.print(
            f"  [{finding['severity']}] {finding['engine']} {finding['rule']}: {finding['message']}", markup=False
        )
    for waiver in row.get("waivers") or []:
        out.print(f"  waiver {waiver['id']} ({waiver['state']}): {waiver['target']}: {waiver['reason']}", markup=False)
    return 0


def _audit(args: argparse.Namespace) -> int:
    since = time.time() - args.since * 3600 if args.since is not None else None
    rows = _client(args).call(
        "GET",
        "/admin/api/audit",
        query={
            "since": since,
            "count": args.count,
            "artifact": args.artifact,
            "event": args.event,
            "actor": args.actor,
        },
    )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"audit ({len(rows)} entries)")
    for column in ("time", "event", "actor", "artifact", "status", "ref"):
        table.add_column(column, overflow="fold")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(row.get("ts", 0))))
        cells = (row.get(k, "") for k in ("event", "actor", "artifact_id", "status", "ref"))
        table.add_row(when, *(Text(str(c)) for c in cells))
    out.print(table)
    return 0


def _policy_reload(args: argparse.Namespace) -> int:
    row = _client(args).call("POST", "/admin/api/policy/reload")
    print(json.dumps(row) if args.json else f"policy {row['old']} -> {row['new']} ({row['source']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubgate", description="Pre-download vetting proxy for ML models")
    sub = parser.add_subparsers(dest="command", required=True)

    def admin_command(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--url", default=DEFAULT_URL, help=f"hubgate server (default {DEFAULT_URL})")
        p.add_argument("--admin", help="your name in the audit trail (default $HUBGATE_ADMIN_NAME or $USER)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    p = sub.add_parser("serve", help="run the proxy (settings: HUBGATE_* variables or config/hubgate.toml)")
    p.add_argument("--host", help="address to listen on (default $HUBGATE_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="port to listen on (default $HUBGATE_PORT or 8080)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("scan", help="scan local files (exit 0 clean, 1 unsafe, 2 error)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (recursed)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_scan)

    policy = sub.add_parser("policy", help="policy tools").add_subparsers(dest="policy_command", required=True)
    p = policy.add_parser("check", help="validate a policy file (default: HUBGATE_POLICY or config/policy.toml)")
    p.add_argument("file", nargs="?", help="the policy file (default: $HUBGATE_POLICY or config/policy.toml)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_policy_check)
    p = policy.add_parser("reload", help="ask the running server to reload its policy file")
    p.add_argument("--url", default=DEFAULT_URL, help=f"hubgate server (default {DEFAULT_URL})")
    p.add_argument("--admin", help="your name in the audit trail (default $HUBGATE_ADMIN_NAME or $USER)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_policy_reload)

    p = admin_command("quarantine", "list artifacts awaiting an admin (or another --status)", _quarantine)
    p.add_argument(
        "--status",
        default="quarantined",
        choices=["quarantined", "blocked", "approved", "rejected"],
        help="which artifacts to list (default quarantined)",
    )
    for action in ("approve", "reject", "revoke"):
        p = admin_command(action, f"{action} an artifact (id or org/name@commit:path)", _decide(action))
        p.add_argument("id", help="artifact id (12 hex) or org/name@commit:path")
        p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    p = admin_command("verdict", "show one artifact's verdict and findings", _verdict)
    p.add_argument("id", help="artifact id (12 hex) or org/name@commit:path")
    p = admin_command("audit", "read the audit trail", _audit)
    p.add_argument("--since", type=float, help="hours back")
    p.add_argument("--count", type=int, default=200, help="at most this many entries (default 200)")
    p.add_argument("--artifact", help="only this artifact's entries (its id)")
    p.add_argument("--event", help="only this event (decision, approve, waive, served-under-waiver, ...)")
    p.add_argument("--actor", help="only entries whose actor contains this (e.g. alice)")
    for register in _extension_commands():
        register(sub)
    return parser


def _extension_commands() -> list[Callable[[Any], object]]:
    """Subcommands that live with their feature (torch mirror, bundles, vet)."""
    registrars: list[Callable[[Any], object]] = []
    from proxy.torch_command import add_parser as add_torch_mirror

    registrars.append(add_torch_mirror)
    from proxy.bundle_command import add_parsers as add_bundle_commands

    registrars.append(add_bundle_commands)
    from proxy.admin_commands import add_parsers as add_workflow_commands

    registrars.append(add_workflow_commands)
    return registrars


def settings_error(exc: ValidationError) -> str:
    """One line per bad setting, named as the admin would set it (variable and config-file key)."""
    config = os.environ.get("HUBGATE_CONFIG", "config/hubgate.toml")
    lines = [f"hubgate: invalid settings (environment HUBGATE_* or {config}):"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown setting (every key is listed in config/hubgate.toml)")
        else:
            lines.append(f"  {key} (HUBGATE_{key.upper()}): {error['msg']}, got {error.get('input')!r}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return int(args.func(args))
    except HubgateError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        err.print(f"[red]error:[/red] {escape(settings_error(exc))}", highlight=False)
        return 2
    except BrokenPipeError:
        # `hubgate audit --json | head`: the reader left; say nothing more (stdout is gone) and exit quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
