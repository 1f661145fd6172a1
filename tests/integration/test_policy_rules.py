"""Every policy rule type, end to end: real card front matter from the fake Hub, decided by a running hubgate."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from tests.fakes.hf_hub import FakeHub
from tests.integration.http import Answer, get_until_done
from tests.integration.test_pipeline_http import safetensors_bytes


def card(**fields: object) -> str:
    import yaml

    return f"---\n{yaml.safe_dump(fields)}---\n# model\n"


def policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text("version = 1\n" + text)
    return path


def fetch(gate_url: str, repo: str, path: str = "model.safetensors") -> Answer:
    return get_until_done(f"{gate_url}/{repo}/resolve/main/{path}")


def message(answer: Answer) -> str:
    return answer.header("X-Error-Message") or ""


def add(hub: FakeHub, repo: str, card_text: str | None, **files: bytes) -> None:
    hub.add_repo(repo, files=files or {"model.safetensors": safetensors_bytes()}, card=card_text)


def test_lineage_through_base_model(make_hubgate, fake_hub: FakeHub) -> None:
    add(fake_hub, "lab/base-nc", card(license="cc-by-nc-4.0"))
    add(fake_hub, "lab/base-ok", card(license="mit"))
    add(fake_hub, "acme/laundered", card(license="apache-2.0", base_model="lab/base-nc"))
    add(fake_hub, "acme/clean-ft", card(license="apache-2.0", base_model=["lab/base-ok"]))
    add(fake_hub, "acme/lost-base", card(license="apache-2.0", base_model="lab/does-not-exist"))
    gate = make_hubgate(hf_upstream=fake_hub.url)

    laundered = fetch(gate.url, "acme/laundered")
    assert laundered.status == 403
    assert "base model lab/base-nc has license cc-by-nc-4.0" in message(laundered)
    assert "license.lineage" in message(laundered)
    assert fake_hub.count("GET", origin="cdn", file="model.safetensors") == 0  # refused before any download
    assert fetch(gate.url, "acme/clean-ft").status == 200
    lost = fetch(gate.url, "acme/lost-base")
    assert lost.status == 403 and "quarantined" in message(lost) and "lab/does-not-exist" in message(lost)


def test_license_lists_tags_and_unknowns(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    add(fake_hub, "acme/gpl", card(license="gpl-3.0"))
    add(fake_hub, "acme/other", card(license="other", license_name="acme-community", license_link="LICENSE"))
    add(fake_hub, "acme/listed", card(license="other", license_name="acme-community"))
    policy = policy_file(tmp_path, '[license]\nallow = ["mit", "other:acme-community"]\n')
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy)
    gpl = fetch(gate.url, "acme/gpl")
    assert gpl.status == 403 and "gpl-3.0-only" in message(gpl) and "license.unknown" in message(gpl)
    assert fetch(gate.url, "acme/listed").status == 200
    assert fetch(gate.url, "acme/other").status == 200


def test_required_card_fields(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    add(fake_hub, "acme/no-datasets", card(license="mit"))
    add(fake_hub, "acme/documented", card(license="mit", datasets=["acme/corpus"]))
    add(fake_hub, "acme/no-card", None)
    policy = policy_file(tmp_path, '[card]\nrequired = true\nrequired_fields = ["license", "datasets"]\n')
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy)
    missing = fetch(gate.url, "acme/no-datasets")
    assert missing.status == 403 and "datasets" in message(missing) and "card." in message(missing)
    assert fetch(gate.url, "acme/documented").status == 200
    no_card = fetch(gate.url, "acme/no-card")
    assert no_card.status == 403 and "card" in message(no_card)


def test_publisher_allow_and_deny(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    for repo in ("good-org/m", "evil-org/m", "random/m"):
        add(fake_hub, repo, card(license="mit"))
    policy = policy_file(tmp_path, '[publisher]\nallow = ["good-org", "evil-org"]\ndeny = ["evil-org/*"]\n')
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy)
    assert fetch(gate.url, "good-org/m").status == 200
    evil = fetch(gate.url, "evil-org/m")
    assert evil.status == 403 and "publisher.deny" in message(evil)
    unlisted = fetch(gate.url, "random/m")
    assert unlisted.status == 403 and "publisher" in message(unlisted)


def test_safetensors_only_in_two_lines(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    state = io.BytesIO()
    torch.save(torch.nn.Linear(4, 2).state_dict(), state)
    add(
        fake_hub,
        "acme/both",
        card(license="mit"),
        **{"pytorch_model.bin": state.getvalue(), "model.safetensors": safetensors_bytes()},
    )
    policy = policy_file(tmp_path, '[format]\nweights = "block"\nsafetensors = "allow"\n')
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy)
    assert fetch(gate.url, "acme/both").status == 200
    pickle_answer = fetch(gate.url, "acme/both", "pytorch_model.bin")
    assert pickle_answer.status == 403 and "format.pickle" in message(pickle_answer)
    default_gate = make_hubgate(hf_upstream=fake_hub.url)
    assert fetch(default_gate.url, "acme/both", "pytorch_model.bin").status == 200  # a clean state dict passes


def test_custom_code_is_held_and_scopes_override(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    remote = b'{"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}}'
    add(fake_hub, "acme/custom", card(license="mit"), **{"config.json": remote, "modeling_x.py": b"import torch\n"})
    add(fake_hub, "our-org/custom", card(license="mit"), **{"config.json": remote, "modeling_x.py": b"import torch\n"})
    add(fake_hub, "our-org/unlicensed", None)
    policy = policy_file(
        tmp_path,
        '[[scope]]\nmatch = ["our-org"]\nlicense.missing = "allow"\nformat.custom-code = "allow"\n'
        'scan.medium = "allow"\n',
    )
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy)
    for path in ("config.json", "modeling_x.py"):
        held = fetch(gate.url, "acme/custom", path)
        assert held.status == 403 and "quarantined" in message(held), path
        assert fetch(gate.url, "our-org/custom", path).status == 200, path
    assert fetch(gate.url, "our-org/unlicensed").status == 200
