"""`hubgate keygen / export / import` as an admin types them: real subprocesses, settings from the
environment, the outside on the session Redis, the inside on its own embedded Redis in its data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.redis_embedded import EmbeddedRedis
from proxy.verdicts import VerdictStore
from tests.integration.bundle_seed import make_side, seed, weights

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMIT = "e" * 40


def _hubgate(*args: str, env: dict[str, str], cwd: Path, stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUBGATE_")}
    base["PYTHONPATH"] = str(REPO_ROOT)
    base["HUBGATE_CONFIG"] = str(cwd / "no-config.toml")  # never the repo's config/hubgate.toml
    base["HUBGATE_POLICY"] = str(REPO_ROOT / "config" / "policy.toml")
    with stdin.open("rb") if stdin else open(os.devnull, "rb") as source:
        return subprocess.run(
            [sys.executable, "-m", "proxy", *args],
            env=base | env,
            cwd=cwd,
            stdin=source,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.mark.timeout(180)
async def test_keygen_export_import_from_the_command_line(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    outside = await make_side(redis_url, tmp_path / "outside", redis_prefix)
    try:
        await seed(
            outside, "org/model", COMMIT, {"model.safetensors": weights(), "config.json": b"{}"}, license="apache-2.0"
        )
        await seed(
            outside,
            "org/nc",
            COMMIT,
            {"w.safetensors": weights() + b" "},
            license="cc-by-nc-4.0",
            admin={"w.safetensors"},
        )
    finally:
        await outside.blobs.drain()
        await outside.store.close()
    work = tmp_path / "work"
    work.mkdir()

    keygen = _hubgate("keygen", "--out", "site", env={}, cwd=work)
    assert keygen.returncode == 0, keygen.stderr
    assert (work / "site.key").stat().st_mode & 0o777 == 0o600
    assert "key id:" in keygen.stdout

    out_env = {
        "HUBGATE_REDIS_URL": redis_url,
        "HUBGATE_REDIS_PREFIX": redis_prefix,
        "HUBGATE_DATA_DIR": str(tmp_path / "outside"),
    }
    export = _hubgate(
        "export", "--out", "b.tar", "--key", "site.key", "org/model@main", "org/nc", "--json", env=out_env, cwd=work
    )
    assert export.returncode == 0, export.stderr
    summary = json.loads(export.stdout)
    assert summary["blobs"] == 3 and [s["files"] for s in summary["snapshots"]] == [2, 1]

    refused = _hubgate("export", "--out", "c.tar", "--key", "site.key", "org/unknown", env=out_env, cwd=work)
    assert refused.returncode == 2 and "unknown to this hubgate" in refused.stderr
    assert not (work / "c.tar").exists()

    inside_dir = tmp_path / "inside"
    in_env = {"HUBGATE_DATA_DIR": str(inside_dir), "HUBGATE_OFFLINE": "1"}  # embedded Redis in the data dir
    tampered = work / "t.tar"
    raw = bytearray((work / "b.tar").read_bytes())
    raw[-20_000] ^= 1  # inside the last blob
    tampered.write_bytes(bytes(raw))
    bad = _hubgate("import", str(tampered), "--trust-key", "site.pub", env=in_env, cwd=work)
    assert bad.returncode == 2, bad.stderr
    assert "refused" in bad.stderr and "nothing was imported" in bad.stderr
    assert not any(p.is_file() for p in (inside_dir / "blobs").rglob("*"))
    assert not any(p.is_file() for p in (inside_dir / "quarantine").rglob("*"))

    # from a pipe: the import never seeks
    good = _hubgate("import", "-", "--trust-key", "site.pub", "--json", env=in_env, cwd=work, stdin=work / "b.tar")
    assert good.returncode == 1, good.stderr  # 1: imported, but the inside policy blocked one file
    result = json.loads(good.stdout)
    statuses = {f["ref"].split("@")[0] + ":" + f["ref"].rsplit(":", 1)[1]: f["status"] for f in result["files"]}
    assert statuses == {
        "org/model:config.json": "approved",
        "org/model:model.safetensors": "approved",
        "org/nc:w.safetensors": "blocked",
    }

    # The inside's own Redis kept it all (AOF): start it again (as a running server would) and look.
    with EmbeddedRedis(inside_dir / "redis") as embedded:
        store = await VerdictStore.connect(embedded.url)
        try:
            assert await store.get_revision_offline("model", "org/model", "main") == COMMIT
            audit = await store.read_audit(event="bundle-import")
            assert len(audit) == 1 and audit[0]["approved"] == "2"
            # With that server's Redis live on the data dir, the command shares it instead of failing.
            again = _hubgate("import", "b.tar", "--trust-key", "site.pub", "--json", env=in_env, cwd=work)
            assert again.returncode == 1, again.stderr
            assert len(await store.read_audit(event="bundle-import")) == 2
        finally:
            await store.close()
