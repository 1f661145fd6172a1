"""`hubgate torch-mirror DIR [--models FILE|NAMES...] [--hub owner/repo:ref...] [--verify] [--json]`.

The command talks to a running hubgate over its public torch routes (`--url`, default `$HUBGATE_URL` or
http://127.0.0.1:8080), exactly as a torch client would, so it can only ever receive approved bytes: a
blocked or quarantined item is a 403 with the reason, and it is reported, never written. Each 200 carries
the verdict's full sha256 (`X-Hubgate-Sha256`), artifact id and, for hub repos, the pinned commit; the
mirror writer checks the bytes against them. `--verify` re-hashes the mirror against its manifest and asks
hubgate (HEAD on the same routes; nothing is downloaded) whether each artifact is still approved with the
same sha256. Exit codes: 0 all good, 1 something refused or tampered, 2 usage or connection error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from typing import BinaryIO, TextIO, cast

from proxy.errors import BadRequest, HubgateError, UpstreamError
from proxy.models import VerdictStatus
from proxy.torch_mirror import CheckpointEntry, CurrentVerdict, HubEntry, Lookup, Mirror, verify_mirror
from proxy.upstreams.github import HubSpec, parse_hub_spec
from proxy.upstreams.torch import WeightName, parse_weight_path

DEFAULT_URL = "http://127.0.0.1:8080"
UPSTREAM_MODELS = "https://download.pytorch.org/models/"
H_SHA256 = "X-Hubgate-Sha256"
H_ARTIFACT = "X-Hubgate-Artifact"
H_COMMIT = "X-Hubgate-Commit"
H_STATUS = "X-Hubgate-Status"


def weight_names(items: list[str]) -> list[WeightName]:
    """Names, `/models/...` paths, download.pytorch.org URLs, or files of them (one a line, # comments)."""
    raw: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_file():
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                raise BadRequest(f"{item} is not a text list of weight names (one a line)") from None
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    raw.append(line)
        else:
            raw.append(item)
    names = []
    for text in raw:
        parsed = urllib.parse.urlparse(text)
        rel = parsed.path if parsed.scheme else text
        rel = rel.lstrip("/")
        rel = rel.removeprefix("models/")
        names.append(parse_weight_path(rel))
    return names


@dataclass(frozen=True)
class Refusal:
    item: str
    status: int
    message: str


class HubgateClient:
    """The torch routes of a running hubgate, over urllib (the same stack torch uses)."""

    def __init__(self, url: str, *, timeout: float = 1800.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener()

    def weight_url(self, name: WeightName) -> str:
        return f"{self.url}/torch/models/{urllib.parse.quote(name.path)}"

    def hub_url(self, owner: str, repo: str, ref: str) -> str:
        return f"{self.url}/torch/github/{owner}/{repo}/zipball/{urllib.parse.quote(ref, safe='/')}"

    @contextmanager
    def get(self, url: str) -> Iterator[tuple[dict[str, str], BinaryIO]]:
        """GET `url`, waiting out 429s; raises _Refused on 4xx, UpstreamError on anything else."""
        resp = self._request(url, "GET")
        try:
            yield {k: v for k, v in resp.headers.items()}, resp
        finally:
            resp.close()

    def head(self, url: str) -> dict[str, str]:
        resp = self._request(url, "HEAD")
        resp.close()
        return {k: v for k, v in resp.headers.items()}

    def _request(self, url: str, method: str) -> HTTPResponse:
        deadline = time.monotonic() + self.timeout
        while True:
            req = urllib.request.Request(url, method=method, headers={"User-Agent": "hubgate-torch-mirror"})
            try:
                return cast(HTTPResponse, self._opener.open(req, timeout=self.timeout))
            except urllib.error.HTTPError as exc:
                message = exc.headers.get("X-Error-Message") or exc.reason or str(exc)
                exc.close()
                if exc.code == 429 and time.monotonic() < deadline:
                    time.sleep(min(float(exc.headers.get("Retry-After", "2")), 10.0))
                    continue
                if 400 <= exc.code < 500:
                    raise _Refused(exc.code, str(message), exc.headers.get(H_STATUS, "")) from None
                raise UpstreamError(f"hubgate answered {exc.code} for {url}: {message}") from None
            except (urllib.error.URLError, OSError) as exc:
                raise UpstreamError(f"cannot reach hubgate at {self.url}: {exc}") from None


class _Refused(HubgateError):
    def __init__(self, status: int, message: str, verdict_status: str) -> None:
        super().__init__(message)
        self.status = status
        self.verdict_status = verdict_status


def _require(headers: dict[str, str], name: str, url: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get(name.lower())
    if not value:
        raise UpstreamError(f"{url} answered without {name}: is {url} a hubgate server?")
    return value


def _note_refusal(exc: _Refused, item: str, refused: list[Refusal], log: TextIO) -> None:
    """A refused item is collected and logged; the mirror goes on with the rest."""
    refused.append(Refusal(item, exc.status, exc.message))
    print(f"refused  {item}: {exc.message}", file=log)


def build_mirror(
    root: Path, client: HubgateClient, names: list[WeightName], specs: list[HubSpec], log: TextIO
) -> tuple[list[CheckpointEntry | HubEntry], list[Refusal]]:
    """Fetch each item through hubgate and write it; refusals are collected, not fatal."""
    mirror = Mirror(root, server=client.url)
    written: list[CheckpointEntry | HubEntry] = []
    refused: list[Refusal] = []
    for name in names:
        url = client.weight_url(name)
        try:
            with client.get(url) as (headers, body):
                entry = mirror.add_checkpoint(
                    name,
                    body,
                    sha256=_require(headers, H_SHA256, url),
                    artifact_id=_require(headers, H_ARTIFACT, url),
                )
        except _Refused as exc:
            _note_refusal(exc, name.path, refused, log)
            continue
        written.append(entry)
        print(f"wrote    hub/checkpoints/{entry.basename}  sha256 {entry.sha256}", file=log)
    for spec in specs:
        url = client.hub_url(spec.owner, spec.repo, spec.ref)
        try:
            with client.get(url) as (headers, body):
                hub_entry = mirror.add_hub_repo(
                    spec,
                    body,
                    sha256=_require(headers, H_SHA256, url),
                    commit=_require(headers, H_COMMIT, url),
                    artifact_id=_require(headers, H_ARTIFACT, url),
                )
        except _Refused as exc:
            _note_refusal(exc, str(spec), refused, log)
            continue
        written.append(hub_entry)
        print(f"wrote    hub/{hub_entry.dir_name}  commit {hub_entry.commit}", file=log)
    mirror.save()
    return written, refused


def verdict_lookup(client: HubgateClient) -> Lookup:
    """Ask hubgate about one mirror entry with a HEAD on the route that served it."""

    def lookup(entry: CheckpointEntry | HubEntry) -> CurrentVerdict | None:
        if isinstance(entry, CheckpointEntry):
            url = client.weight_url(parse_weight_path(entry.path))
        else:
            url = client.hub_url(entry.owner, entry.repo, entry.commit)
        try:
            headers = client.head(url)
        except _Refused as exc:
            if exc.status == 403:
                status = exc.verdict_status or VerdictStatus.BLOCKED.value
                return CurrentVerdict(status=VerdictStatus(status), sha256="")
            return None
        return CurrentVerdict(status=VerdictStatus.APPROVED, sha256=_require(headers, H_SHA256, url))

    return lookup


def torch_mirror(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the command; returns the exit code."""
    root = Path(args.dir)
    client = HubgateClient(args.url or os.environ.get("HUBGATE_URL") or DEFAULT_URL, timeout=args.timeout)
    log = sys.stderr if args.json else out
    try:
        if args.verify:
            if args.models or args.hub:
                raise BadRequest("--verify takes no --models/--hub: it checks what the mirror holds")
            lookup = None if args.manifest_only else verdict_lookup(client)
            problems = verify_mirror(root, lookup)
            if args.json:
                json.dump({"ok": not problems, "problems": [p.model_dump() for p in problems]}, out, indent=2)
                out.write("\n")
            else:
                for p in problems:
                    print(f"{p.kind:16} {p.path}: {p.message}", file=out)
                print("mirror OK" if not problems else f"{len(problems)} problem(s) found", file=out)
            return 1 if problems else 0
        names = weight_names(args.models or [])
        specs = [parse_hub_spec(s) for s in args.hub or []]
        if not names and not specs:
            raise BadRequest("nothing to mirror: give --models and/or --hub (or --verify)")
        written, refused = build_mirror(root, client, names, specs, log)
    except HubgateError as exc:
        print(f"hubgate torch-mirror: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        payload = {
            "written": [e.model_dump() for e in written],
            "refused": [r.__dict__ for r in refused],
            "torch_home": str(root.resolve()),
        }
        json.dump(payload, out, indent=2)
        out.write("\n")
    else:
        print(f"{len(written)} written, {len(refused)} refused; use TORCH_HOME={root.resolve()}", file=out)
    return 1 if refused else 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Register `torch-mirror` on the CLI's subparsers; the handler is `args.func(args) -> int`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "torch-mirror",
        help="write approved torch weights and hub repos as a TORCH_HOME directory, or --verify one",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("dir", help="the TORCH_HOME directory to write or verify")
    p.add_argument(
        "--models",
        nargs="+",
        metavar="FILE|NAME",
        help="weight names, download.pytorch.org URLs, or files of them",
    )
    p.add_argument("--hub", nargs="+", metavar="OWNER/REPO:REF", help="hub repos, pinned to a ref")
    p.add_argument("--verify", action="store_true", help="re-hash the mirror against the manifest and verdicts")
    p.add_argument("--manifest-only", action="store_true", help="with --verify: do not ask hubgate (air-gapped check)")
    p.add_argument("--url", default=None, help=f"hubgate base URL (default $HUBGATE_URL or {DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for one item's vetting")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.set_defaults(func=torch_mirror)
    return p
