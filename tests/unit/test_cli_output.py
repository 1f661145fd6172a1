"""The admin CLI prints server text verbatim (no rich markup eaten) and exits quietly when its reader leaves.

A stdlib HTTP server on 127.0.0.1 plays the admin API with a real verdict shape: reasons quote rule ids in
brackets (`[pickle.dangerous-global at x@2]`) and findings print as `[critical] ...`, both of which rich
used to swallow as markup tags.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main

REASON = (
    "pytorch_model.bin: hubgate found imports posix.system [pickle.dangerous-global at pytorch_model.bin@2],"
    " severity critical (rule scan.critical)"
)
VERDICT = {
    "id": "fdf7555fead6",
    "artifact_id": "fdf7555fead6",
    "status": "blocked",
    "ref": "acme/model@bd8e31322b10:pytorch_model.bin",
    "reasons": [REASON],
    "decided_by": "admin:alice",
    "card": {"license": "apache-2.0", "licenses": ["apache-2.0"]},
    "scan": {
        "findings": [
            {"severity": "critical", "engine": "hubgate", "rule": "pickle.dangerous-global", "message": "[bold]x"}
        ]
    },
    "waivers": [{"id": "w1", "state": "active", "target": "acme/model", "reason": "[red]signed[/red]"}],
}


class _Api(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith("/admin/api/artifacts/bad"):
            self.send_response(409)
            self.send_header("X-Error-Message", "hubgate: cannot approve [rejected] artifact")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/admin/api/audit":
            body: Any = [{"ts": 0, "event": "reject", "actor": "admin:[bob]", "artifact_id": "fdf7555fead6"}]
        elif path == "/admin/api/waivers":
            body = [dict(VERDICT["waivers"][0], created_by="alice", expires_at=None)]  # type: ignore[index]
        else:
            body = VERDICT
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HUBGATE_ADMIN_TOKEN", "t")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _flat(text: str) -> str:
    """Table cells wrap; join the lines of each cell column back for substring checks."""
    return " ".join(text.split())


def test_verdict_prints_brackets_verbatim(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verdict", "fdf7555fead6", "--url", api_url]) == 0
    out = capsys.readouterr().out
    assert "[critical] hubgate pickle.dangerous-global: [bold]x" in out
    assert "[red]signed[/red]" in out
    assert "[pickle.dangerous-global" in _flat(out)


def test_decide_waivers_and_audit_print_brackets(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reject", "fdf7555fead6", "--reason", "typosquat [sec-team]", "--url", api_url]) == 0
    assert "typosquat [sec-team]" in capsys.readouterr().out
    assert main(["waivers", "--url", api_url]) == 0
    assert "[red]signed[/red]" in _flat(capsys.readouterr().out).replace(" ", "")
    assert main(["audit", "--url", api_url]) == 0
    assert "[bob]" in capsys.readouterr().out


def test_error_message_keeps_brackets(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["approve", "bad", "--reason", "r", "--url", api_url]) == 2
    assert "cannot approve [rejected] artifact" in capsys.readouterr().err


def test_closed_stdout_is_a_quiet_exit(tmp_path: Path) -> None:
    """`hubgate scan DIR --json | head -1`: no BrokenPipeError traceback once the reader is gone."""
    for i in range(150):
        (tmp_path / f"f{i}.json").write_text("{}")
    script = (
        "import os, sys\n"
        "from proxy.cli import main\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
        f"sys.exit(main(['scan', {str(tmp_path)!r}, '--json']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 141


def test_policy_check_without_a_policy_file_reports_the_built_in_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server enforces the built-in default when no policy file exists; `policy check` says so (exit 0)."""
    monkeypatch.setenv("HUBGATE_POLICY", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("HUBGATE_CONFIG", str(tmp_path / "absent-hubgate.toml"))
    assert main(["policy", "check"]) == 0
    out = capsys.readouterr().out
    assert "absent.toml (no such file; the server uses the built-in default policy): valid policy" in out


def test_policy_check_of_a_missing_named_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", str(tmp_path / "typo.toml")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"{tmp_path / 'typo.toml'}: no such policy file"  # not "fix the lines above"


def test_every_argument_of_every_command_has_help() -> None:
    """`hubgate CMD --help` explains each argument: a newcomer should not have to read the source."""
    import argparse

    from proxy.cli import build_parser

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{prefix} {name}")
            elif not isinstance(action, argparse._HelpAction) and action.help is None:
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "hubgate")
    assert not missing, missing


def test_serve_on_a_busy_port_is_one_clear_error(tmp_path: Path) -> None:
    """No traceback, no "listening" line: the port is named and what to do is said."""
    import os
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUBGATE_")}
        env.update(HUBGATE_DATA_DIR=str(tmp_path / "data"), HUBGATE_CONFIG=str(tmp_path / "none.toml"))
        proc = subprocess.run(
            [sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "listening on" not in proc.stderr, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in " ".join(proc.stderr.split()), proc.stderr


def test_bad_settings_are_named_not_a_traceback(tmp_path: Path) -> None:
    import os

    config = tmp_path / "hubgate.toml"
    config.write_text("prot = 8080\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBGATE_")}
    env.update(HUBGATE_PORT="eighty", HUBGATE_CONFIG=str(config), HUBGATE_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.run([sys.executable, "-m", "proxy", "serve"], capture_output=True, text=True, timeout=60, env=env)
    text = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "port (HUBGATE_PORT): Input should be a valid integer" in text, text
    assert "prot: unknown setting" in text, text


def test_import_of_a_missing_bundle_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--out", str(tmp_path / "site")]) == 0
    capsys.readouterr()
    missing = tmp_path / "models.tar"
    assert main(["import", str(missing), "--trust-key", str(tmp_path / "site.pub")]) == 2
    assert " ".join(capsys.readouterr().err.split()) == f"error: {missing}: no such bundle file"
