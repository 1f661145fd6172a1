"""CLI commands of the admin workflow: waive, waivers, unwaive, vet (registered by `proxy.cli`).

Like the other admin commands they talk to a running server's admin API (`--url`, HUBGATE_ADMIN_TOKEN) and
print JSON with `--json`. `hubgate vet` exits 0 when every selected file is served, 1 when any is refused or
failed, 2 when the job itself failed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from proxy.errors import HubgateError

DEFAULT_URL = "http://127.0.0.1:8080"
out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages hold paths and ids: never break them


def _client(args: argparse.Namespace) -> Any:
    from proxy.admin_client import AdminClient

    return AdminClient(args.url, admin_name=getattr(args, "admin", None))


def _when(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _waiver_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "covers", "state", "by", "reason", "expires"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = (row["id"], row["target"], row["state"], row["created_by"], row["reason"], _when(row.get("expires_at")))
        table.add_row(*(Text(c) for c in cells))  # Text, not markup: a reason may hold [brackets]
    return table


def _waive(args: argparse.Namespace) -> int:
    body = {
        "target": args.target,
        "reason": args.reason,
        "expires": args.expires,
        "repo_type": args.type,
        "scope": args.scope,
    }
    row = _client(args).call("POST", "/admin/api/waivers", body=body)
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        out.print(f"waiver {row['id']}: {row['target']}, expires {_when(row.get('expires_at'))}", markup=False)
    return 0


def _waivers(args: argparse.Namespace) -> int:
    rows = _client(args).call("GET", "/admin/api/waivers", query={"all": "1" if args.all else None})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        out.print(_waiver_table(rows, f"{'all' if args.all else 'active'} waivers ({len(rows)})"))
    return 0


def _unwaive(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    row = _client(args).call("DELETE", f"/admin/api/waivers/{quote(args.id, safe='')}", body={"reason": args.reason})
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        out.print(f"waiver {row['id']} revoked ({row['target']}): {args.reason}", markup=False)
    return 0


def _vet_table(job: dict[str, Any]) -> Table:
    table = Table(title=f"{job['repo_id']}@{job.get('commit', '')[:12] or job['revision']}: {job['state']}")
    for column in ("file", "status", "id", "reasons"):
        table.add_column(column, overflow="fold")
    for entry in job.get("files", []):
        style = "green" if entry.get("served") else "red"
        table.add_row(
            Text(entry["path"]),
            Text(entry["status"], style=style),
            Text(entry.get("id", "")),
            Text("; ".join(entry.get("reasons") or [])),
        )
    return table


def _vet(args: argparse.Namespace) -> int:
    client = _client(args)
    body = {
        "repo": args.repo,
        "revision": args.revision,
        "include": args.include or [],
        "exclude": args.exclude or [],
        "repo_type": args.type,
    }
    job = client.call("POST", "/admin/api/vet", body=body)
    path = f"/admin/api/vet/{job['id']}"
    quiet = args.json or args.no_progress
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=True,
    )
    deadline = time.monotonic() + args.timeout
    with progress:
        task = progress.add_task(f"vetting {args.repo}", total=None, detail="listing files")
        while job["state"] not in ("done", "failed"):
            if time.monotonic() > deadline:
                raise HubgateError(f"hubgate: vet job {job['id']} still running after {args.timeout:.0f}s; poll {path}")
            time.sleep(args.poll)
            job = client.call("GET", path)
            summary = ", ".join(f"{n} {s}" for s, n in sorted((job.get("summary") or {}).items()) if s != "pending")
            progress.update(task, total=job.get("total") or None, completed=job.get("done", 0), detail=summary)
    if args.json:
        print(json.dumps(job, indent=2))
    elif job.get("files"):
        out.print(_vet_table(job))
    if job["state"] == "failed":
        err.print(f"[red]error:[/red] {escape(str(job.get('error')))}", highlight=False)
        return 2
    return 0 if all(entry.get("served") for entry in job.get("files", [])) else 1


def add_parsers(sub: Any) -> None:
    def admin_command(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        p.add_argument("--url", default=DEFAULT_URL, help=f"hubgate server (default {DEFAULT_URL})")
        p.add_argument("--admin", help="your name in the audit trail (default $HUBGATE_ADMIN_NAME or $USER)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    p = admin_command("waive", "let a refused artifact, content, commit or repo be served (with a reason)", _waive)
    p.add_argument("target", help="artifact id | org/name@commit:path | sha256 | org/name@commit | org/name")
    p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    p.add_argument("--expires", help="7d, 12h, 2w, or an ISO date/time (UTC); default: until revoked")
    p.add_argument("--type", choices=["model", "dataset", "space"], help="repo type for org/name targets")
    p.add_argument("--scope", choices=["artifact", "sha256", "commit", "repo"], help="assert the scope")
    p = admin_command("waivers", "list active waivers (--all: revoked and expired too)", _waivers)
    p.add_argument("--all", action="store_true", help="include revoked and expired waivers")
    p = admin_command("unwaive", "revoke a waiver (takes effect on the next request)", _unwaive)
    p.add_argument("id", help="waiver id (w + 10 hex, see hubgate waivers)")
    p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    p = admin_command("vet", "fetch and vet a repo ahead of use, through the server", _vet)
    p.add_argument("repo", help="org/name")
    p.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    p.add_argument("--include", action="extend", nargs="+", metavar="GLOB", help="only files matching these globs")
    p.add_argument("--exclude", action="extend", nargs="+", metavar="GLOB", help="skip files matching these globs")
    p.add_argument("--type", choices=["model", "dataset", "space"], default="model", help="repo type (default model)")
    p.add_argument("--poll", type=float, default=0.5, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=24 * 3600, help="give up waiting after this many seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
