"""The fake Hub itself, proven with the real clients: huggingface_hub 2.4 and transformers in subprocesses
(`HF_ENDPOINT` = the fake) and raw HTTP for the protocol details those clients don't expose.

If these pass, the fake behaves like the Hub as far as the clients can tell, so a proxy test that passes
against it means something.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from safetensors.numpy import save

from tests.clients import run_client
from tests.fakes.hf_hub import NO_ACCESS_TOKEN, VALID_TOKEN, FakeHub, FakeHubThread
from tests.fakes.hf_repos import git_blob_sha1
from tests.fakes.minilm import MINILM_REPO, add_minilm, minilm_dir

pytestmark = pytest.mark.slow

WEIGHTS = save({"w": np.arange(75_000, dtype=np.float32)})  # LFS through .gitattributes (*.safetensors)
BIG = bytes(i % 13 for i in range(100_000))  # LFS by size (threshold 64 KiB below)
LONG_TEXT = ("All work and no play makes Jack a dull boy.\n" * 80).encode()  # > 1 KB: gzip on GET
ODD_NAME = "notes/a b&ü.txt"
RESUME = bytes(range(256)) * (48 * 1024)  # 12 MiB: past the client's 10 MiB resume granularity
CARD = "---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n- fake\n---\n# A model\n"
MODEL_FILES = {
    "config.json": b'{"v": 1}',
    "weights.safetensors": WEIGHTS,
    "data/big.dat": BIG,
    "notes/long.txt": LONG_TEXT,
    ODD_NAME: b"odd",
}


def populate(hub: FakeHub) -> dict[str, Any]:
    first, second = hub.add_repo(
        "acme/model",
        files=MODEL_FILES,
        card=CARD,
        lfs_threshold=64 * 1024,
        extra_commits=[{"config.json": b'{"v": 2}'}],
        tags={"v1.0": "main"},
    )
    hub.tag("acme/model", "v1.0", first)
    dev = hub.commit("acme/model", {"config.json": b'{"v": "dev"}'}, branch="dev")
    hub.add_repo(
        "acme/data",
        repo_type="dataset",
        files={"train.csv": b"a,b\n1,2\n", "data/part-0.parquet": b"PAR1" + bytes(5000)},
        card="---\nlicense: cc-by-4.0\n---\n",
    )
    hub.add_repo("acme/gated", files={"config.json": b'{"gated": true}', "w.bin": b"g" * 2000}, gated=True)
    hub.add_repo("acme/private", files={"config.json": b'{"private": true}'}, private=True)
    hub.add_repo("acme/old-name", files={"config.json": b'{"renamed": true}', "w.safetensors": WEIGHTS})
    hub.rename("acme/old-name", "acme/new-name")
    hub.add_repo("acme/resume", files={"big.bin": RESUME})
    add_minilm(hub)
    return {"first": first, "second": second, "dev": dev}


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[FakeHub, dict[str, Any]]]:
    with FakeHubThread() as hub:
        yield hub, populate(hub)


@pytest.fixture
def hub(shared: tuple[FakeHub, dict[str, Any]]) -> Iterator[FakeHub]:
    fake, _ = shared
    fake.reset_log()
    yield fake
    fake.clear_faults()
    fake.xet = False
    fake.page_size = 50


@pytest.fixture
def shas(shared: tuple[FakeHub, dict[str, Any]]) -> dict[str, Any]:
    return shared[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the real huggingface_hub client ---------------------------------------------------------------------------
def test_hf_hub_download_by_branch_tag_commit_and_dataset(hub: FakeHub, shas: dict[str, Any]) -> None:
    first = shas["first"]
    result = run_client(
        f"""
        import hashlib, os
        from huggingface_hub import hf_hub_download as get
        text = lambda *a, **k: open(get(*a, **k)).read()
        digest = lambda *a, **k: hashlib.sha256(open(get(*a, **k), "rb").read()).hexdigest()
        emit(main=text("acme/model", "config.json"), tag=text("acme/model", "config.json", revision="v1.0"),
             commit=text("acme/model", "config.json", revision="{first}"),
             short=text("acme/model", "config.json", revision="{first[:7]}"),
             dev=text("acme/model", "config.json", revision="dev"),
             refs=text("acme/model", "config.json", revision="refs/heads/dev"),
             lfs=digest("acme/model", "weights.safetensors"), by_size=digest("acme/model", "data/big.dat"),
             gzip=digest("acme/model", "notes/long.txt"), odd=text("acme/model", {ODD_NAME!r}),
             csv=text("acme/data", "train.csv", repo_type="dataset"),
             parquet=digest("acme/data", "data/part-0.parquet", repo_type="dataset"))
        blobs = os.path.join(os.environ["HF_HOME"], "hub", "models--acme--model", "blobs")
        emit(blobs=sorted(os.listdir(blobs)))
        """,
        endpoint=hub.url,
    )
    assert result.ok, result.output
    d = result.data
    assert (d["main"], d["tag"], d["commit"], d["short"]) == ('{"v": 2}', '{"v": 1}', '{"v": 1}', '{"v": 1}')
    assert d["dev"] == d["refs"] == '{"v": "dev"}'
    assert (d["lfs"], d["by_size"], d["gzip"]) == (sha256(WEIGHTS), sha256(BIG), sha256(LONG_TEXT))
    assert (d["odd"], d["csv"]) == ("odd", "a,b\n1,2\n")
    assert d["parquet"] == sha256(b"PAR1" + bytes(5000))
    # Blob names are the served etags: git sha1 for small files, sha256 for LFS (hf.md §1.4).
    assert git_blob_sha1(b'{"v": 2}') in d["blobs"] and sha256(WEIGHTS) in d["blobs"]

    # What went over the wire: 307 → resolve-cache for small files, 302 → CDN (no token) for LFS, gzip.
    assert hub.count("HEAD", path_contains="/acme/model/resolve/main/config.json", status=307) == 1
    assert hub.count("GET", origin="cdn", file="weights.safetensors", status=200) == 1
    assert hub.count("GET", origin="cdn", file="data/big.dat") == 1
    assert not any(r.authorized for r in hub.requests(origin="cdn"))
    [long_get] = hub.requests("GET", path_contains="/api/resolve-cache/models/acme/model/", file="notes/long.txt")
    assert long_get.response_headers["content-encoding"] == "gzip"
    assert "content-length" not in long_get.response_headers
    assert hub.count("HEAD", path_contains="/datasets/acme/data/resolve/main/train.csv") == 1
    # The client's user agent names hf_hub: the end-to-end tests rely on it to spot a bypassed proxy.
    assert all("hf_hub/" in r.headers.get("user-agent", "") for r in hub.log)


def test_snapshot_download_follows_pagination(hub: FakeHub, shas: dict[str, Any]) -> None:
    hub.page_size = 2
    result = run_client(
        """
        import os
        from huggingface_hub import snapshot_download
        root = snapshot_download("acme/model")
        files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
        emit(root=root, files=files, weights=open(os.path.join(root, "weights.safetensors"), "rb").read().hex())
        """,
        endpoint=hub.url,
    )
    assert result.ok, result.output
    assert result.data["root"].endswith(shas["second"])
    assert result.data["files"] == sorted([*MODEL_FILES, ".gitattributes", "README.md"])
    assert bytes.fromhex(result.data["weights"]) == WEIGHTS
    entries = len(MODEL_FILES) + 2 + 2  # files, .gitattributes and README.md, directories data/ and notes/
    assert hub.count("GET", path_contains="/api/models/acme/model/tree/") == math.ceil(entries / 2)


def test_metadata_endpoints(hub: FakeHub, shas: dict[str, Any]) -> None:
    result = run_client(
        """
        from huggingface_hub import HfApi
        api = HfApi()
        info = api.model_info("acme/model", files_metadata=True)
        lfs = {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs}
        refs = api.list_repo_refs("acme/model")
        paths = api.get_paths_info("acme/model", ["config.json", "notes", "missing.txt"], revision="v1.0")
        data = api.dataset_info("acme/data")
        st = api.parse_safetensors_file_metadata("acme/model", "weights.safetensors")  # Range via the CDN
        renamed = api.model_info("acme/old-name")
        emit(sha=info.sha, license=info.card_data.license, tags=info.tags, lfs=lfs,
             library=info.library_name, gated=api.model_info("acme/gated").gated,
             branches=sorted((b.name, b.target_commit) for b in refs.branches),
             tags_=[(t.name, t.target_commit) for t in refs.tags],
             paths=[(type(p).__name__, p.path) for p in paths],
             files=sorted(api.list_repo_files("acme/model")), data_license=data.card_data.license,
             data_sha=data.sha, st=st.tensors["w"].shape,
             renamed=renamed.id, renamed_file=open(api.hf_hub_download("acme/old-name", "config.json")).read(),
             exists=[api.file_exists("acme/model", "config.json"),
                                        api.file_exists("acme/model", "nope.txt")])
        """,
        endpoint=hub.url,
    )
    assert result.ok, result.output
    d = result.data
    assert d["sha"] == shas["second"]
    assert (d["license"], d["library"], d["gated"], d["data_license"]) == (
        "apache-2.0",
        "transformers",
        "manual",
        "cc-by-4.0",
    )
    assert {"license:apache-2.0", "fake", "transformers"} <= set(d["tags"])
    assert d["lfs"] == {"weights.safetensors": sha256(WEIGHTS), "data/big.dat": sha256(BIG)}
    assert d["branches"] == [["dev", shas["dev"]], ["main", shas["second"]]]
    assert d["tags_"] == [["v1.0", shas["first"]]]
    assert d["paths"] == [["RepoFile", "config.json"], ["RepoFolder", "notes"]]
    assert d["files"] == sorted([*MODEL_FILES, ".gitattributes", "README.md"])
    assert d["exists"] == [True, False]
    assert d["data_sha"] == hub.repo("acme/data", "dataset").branches["main"]
    assert d["st"] == [75_000]
    assert hub.count("GET", origin="cdn", file="weights.safetensors", status=206) >= 1
    assert (d["renamed"], d["renamed_file"]) == ("acme/new-name", '{"renamed": true}')
    assert hub.count(path_contains="/acme/old-name", status=307) >= 2


def test_errors_map_to_the_clients_exceptions(hub: FakeHub) -> None:
    result = run_client(
        f"""
        from huggingface_hub import hf_hub_download as get, model_info
        emit(gated=attempt(get, "acme/gated", "config.json"),
             gated_no_access=attempt(get, "acme/gated", "config.json", token={NO_ACCESS_TOKEN!r}),
             gated_ok=attempt(lambda: open(get("acme/gated", "config.json", token={VALID_TOKEN!r})).read()),
             gated_info=attempt(lambda: model_info("acme/gated").id),
             private=attempt(model_info, "acme/private"),
             private_ok=attempt(lambda: open(get("acme/private", "config.json", token={VALID_TOKEN!r})).read()),
             bad_token=attempt(model_info, "acme/model", token="hf_wrong"),
             no_repo=attempt(get, "acme/nothing", "config.json"),
             no_file=attempt(get, "acme/model", "nothing.json"),
             no_rev=attempt(get, "acme/model", "config.json", revision="nothing"))
        """,
        endpoint=hub.url,
    )
    assert result.ok, result.output
    d = result.data
    assert d["gated"]["type"] == "GatedRepoError" and "Please log in" in d["gated"]["message"]
    assert d["gated_no_access"]["type"] == "GatedRepoError"
    assert "not in the authorized list" in d["gated_no_access"]["message"]
    assert d["gated_ok"] == {"ok": True, "value": '{"gated": true}'}
    assert d["gated_info"] == {"ok": True, "value": "acme/gated"}  # /api info is public for gated repos
    assert d["private"]["type"] == "RepositoryNotFoundError"
    assert d["private_ok"] == {"ok": True, "value": '{"private": true}'}
    assert "Invalid credentials" in d["bad_token"]["message"]
    assert d["no_repo"]["type"] == "RepositoryNotFoundError"
    assert "EntryNotFoundError" in d["no_file"]["types"]
    assert d["no_rev"]["type"] == "RevisionNotFoundError"
    # Private/gated small files are answered 200 at /resolve itself, not redirected.
    assert hub.count("GET", path_contains="/acme/private/resolve/main/config.json", status=200) == 1


def test_faults_cut_corrupt_and_5xx(hub: FakeHub) -> None:
    hub.add_fault("weights.safetensors", cut_after=10_000, origin="cdn")
    hub.add_fault("data/big.dat", corrupt=True, origin="cdn")
    hub.add_fault("notes/long.txt", status=503, methods=("HEAD", "GET"), times=1)
    hub.add_fault("big.bin", cut_after=11 * 1024 * 1024, origin="cdn", times=1)
    result = run_client(
        """
        import hashlib
        from huggingface_hub import hf_hub_download as get
        emit(cut=attempt(get, "acme/model", "weights.safetensors"),
             corrupt=attempt(lambda: hashlib.sha256(open(get("acme/model", "data/big.dat"), "rb").read()).hexdigest()),
             flaky=attempt(lambda: open(get("acme/model", "notes/long.txt"), "rb").read().decode()),
             resumed=attempt(lambda: hashlib.sha256(open(get("acme/resume", "big.bin"), "rb").read()).hexdigest()))
        """,
        endpoint=hub.url,
        env={"HF_HUB_DOWNLOAD_TIMEOUT": "5"},
    )
    assert result.ok, result.output
    d = result.data
    assert d["cut"]["type"] == "RemoteProtocolError", d["cut"]  # after its 5 in-process retries
    assert any(r.cut for r in hub.requests("GET", origin="cdn", file="weights.safetensors"))
    # The client checks sizes only, never hashes (hf.md §1.2): wrong bytes of the right size get through.
    assert d["corrupt"]["ok"] and d["corrupt"]["value"] != sha256(BIG)
    # A one-shot 503 on the HEAD: the client retries once and gets the file.
    assert d["flaky"] == {"ok": True, "value": LONG_TEXT.decode()}
    assert hub.count("HEAD", path_contains="/acme/model/resolve/main/notes/long.txt") == 2
    assert hub.count("HEAD", status=503) == 1
    # A cut after 11 MiB: the client resumes from its last whole 10 MiB chunk with a Range request (hf.md §1.5).
    assert d["resumed"] == {"ok": True, "value": sha256(RESUME)}
    resumed = hub.requests("GET", origin="cdn", file="big.bin")
    assert [(r.status, r.cut, r.headers.get("range")) for r in resumed] == [
        (200, True, None),
        (206, False, "bytes=10485760-"),
    ]


def test_transformers_loads_minilm_from_the_fake(hub: FakeHub) -> None:
    result = run_client(
        f"""
        import torch
        from transformers import AutoModel, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({MINILM_REPO!r})
        model = AutoModel.from_pretrained({MINILM_REPO!r})
        reference = AutoModel.from_pretrained({str(minilm_dir())!r})
        batch = tok(["hubgate vets models"], return_tensors="pt")
        with torch.no_grad():
            got = model(**batch).last_hidden_state.mean(dim=1)
            want = reference(**batch).last_hidden_state.mean(dim=1)
        emit(shape=list(got.shape), same=bool(torch.equal(got, want)), norm=float(got.norm()))
        """,
        endpoint=hub.url,
    )
    assert result.ok, result.output
    assert result.data["shape"] == [1, 384] and result.data["same"] and result.data["norm"] > 0
    assert hub.count("GET", origin="cdn", file="model.safetensors", status=200) == 1
    assert hub.count("HEAD", path_contains="added_tokens.json", status=404) == 1  # optional file, EntryNotFound


def test_xet_is_visible_and_detectable(hub: FakeHub) -> None:
    """With Xet on, an hf_xet client goes to the CAS (the log shows it); with Xet disabled it uses HTTP."""
    hub.xet = True
    snippet = """
        import hashlib
        from huggingface_hub import HfApi, hf_hub_download as get
        entries = HfApi().list_repo_tree("acme/model", recursive=True)
        tree = {f.path: f.xet_hash for f in entries if hasattr(f, "xet_hash")}
        digest = lambda path: hashlib.sha256(open(path, "rb").read()).hexdigest()
        emit(tree=tree, got=attempt(lambda: digest(get("acme/model", "weights.safetensors"))))
        """
    with_xet = run_client(snippet, endpoint=hub.url)
    assert with_xet.ok, with_xet.output
    assert with_xet.data["tree"]["weights.safetensors"] and not with_xet.data["tree"]["config.json"]
    assert not with_xet.data["got"]["ok"]
    assert any("/xet-cas/" in r.path for r in hub.xet_accesses())

    hub.reset_log()
    plain = run_client(snippet, endpoint=hub.url, disable_xet=True)
    assert plain.ok, plain.output
    assert plain.data["got"] == {"ok": True, "value": sha256(WEIGHTS)}
    assert hub.xet_accesses() == []
    [head] = hub.requests("HEAD", file="weights.safetensors")
    assert head.response_headers["x-xet-hash"] and 'rel="xet-auth"' in head.response_headers["link"]


# -- raw HTTP: what the clients rely on but do not expose ----------------------------------------------------------
@pytest.fixture
async def live() -> AsyncIterator[FakeHub]:
    async with FakeHub(page_size=3) as fake:
        fake.add_repo("acme/m", files={"config.json": b"{}", "w.safetensors": bytes(range(256)) * 8})
        yield fake


async def test_cdn_rejects_authorization_expired_and_forged_urls(live: FakeHub) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.head(f"{live.url}/acme/m/resolve/main/w.safetensors", allow_redirects=False) as r:
            assert r.status == 302
            location = r.headers["Location"]
            assert location.startswith(live.cdn_url)
            assert r.headers["X-Linked-Size"] == "2048"
            assert r.headers["X-Linked-Etag"] == f'"{sha256(bytes(range(256)) * 8)}"'
            assert r.headers["ETag"] == f'"{live.file("acme/m", "w.safetensors").oid}"'
        async with s.get(location, headers={"Authorization": "Bearer x"}) as r:
            assert r.status == 400 and "InvalidArgument" in await r.text()
        async with s.get(location.replace("Signature=", "Signature=0")) as r:
            assert r.status == 403
        async with s.get(location, headers={"Range": "bytes=10-19"}) as r:
            assert r.status == 206 and await r.read() == bytes(range(10, 20))
            assert r.headers["Content-Range"] == "bytes 10-19/2048"
        async with s.get(location, headers={"Range": "bytes=5000-"}) as r:
            assert r.status == 416 and r.headers["Content-Range"] == "bytes */2048"
        live.cdn_ttl = -1
        async with s.head(f"{live.url}/acme/m/resolve/main/w.safetensors", allow_redirects=False) as r:
            expired = r.headers["Location"]
        async with s.get(expired) as r:
            assert r.status == 403 and "expired" in await r.text()


async def test_request_ids_revisions_and_pagination_links(live: FakeHub) -> None:
    sha = live.repo("acme/m").branches["main"]
    live.add_repo("acme/many", files={f"f{i}.txt": b"x" for i in range(7)})
    async with aiohttp.ClientSession() as s:
        for url in (
            f"/acme/m/resolve/{sha[:7]}/config.json",
            "/acme/m/resolve/refs%2Fheads%2Fmain/config.json",
            "/api/models/acme/m/revision/refs%2Fheads%2Fmain",
            "/api/agent-harnesses",
            "/acme/nope/resolve/main/x",
            "/no/where",
        ):
            async with s.get(live.url + url, allow_redirects=False) as r:
                assert "X-Request-Id" in r.headers, url
                assert r.status in (200, 307, 404), url
        pages, url = 0, f"{live.url}/api/models/acme/many/tree/main?recursive=true&expand=false"
        paths: list[str] = []
        while url:
            async with s.get(url) as r:
                pages += 1
                paths += [e["path"] for e in await r.json()]
                url = r.links.get("next", {}).get("url", "")  # type: ignore[assignment]
                assert not url or str(url).startswith(live.url)
        assert pages == 3 and len(paths) == 8  # 7 files + .gitattributes, page size 3


async def test_resolve_cache_does_not_bypass_gates(live: FakeHub) -> None:
    [sha] = live.add_repo("acme/g", files={"config.json": b"{}"}, gated=True)
    url = f"{live.url}/api/resolve-cache/models/acme/g/{sha}/config.json"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            assert r.status == 401 and r.headers["X-Error-Code"] == "GatedRepo"
        async with s.get(url, headers={"Authorization": f"Bearer {VALID_TOKEN}"}) as r:
            assert r.status == 200 and await r.read() == b"{}"


async def test_delay_drip_and_one_shot_faults(live: FakeHub) -> None:
    live.add_fault("config.json", status=500, times=1, methods=("GET",), origin="hub")
    live.add_fault("w.safetensors", chunk_size=512, chunk_delay=0.1, origin="cdn")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{live.url}/acme/m/resolve/main/config.json") as r:
            assert r.status == 500
        async with s.get(f"{live.url}/acme/m/resolve/main/config.json") as r:
            assert r.status == 200 and await r.read() == b"{}"
        started = time.monotonic()
        async with s.get(f"{live.url}/acme/m/resolve/main/w.safetensors") as r:
            assert await r.read() == bytes(range(256)) * 8
        assert time.monotonic() - started >= 0.3  # 4 chunks, 0.1 s between each two
        live.clear_faults()
        live.add_fault("/api/models/", delay=0.3, methods=("GET",), times=1)
        started = time.monotonic()
        async with s.get(f"{live.url}/api/models/acme/m") as r:
            assert r.status == 200
        assert time.monotonic() - started >= 0.3
