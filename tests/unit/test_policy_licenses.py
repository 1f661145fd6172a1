"""License normalisation (SPDX via license-expression, Hub ids kept), card/tag reading, patterns, lineage names."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.models import RepoMeta
from proxy.policy.licenses import (
    HF_LICENSE_IDS,
    base_models_of,
    known_ids,
    license_matches,
    licenses_of,
    normalize_license,
    validate_license_pattern,
)


def repo(card: dict[str, Any] | None = None, tags: list[str] | None = None, repo_id: str = "org/model") -> RepoMeta:
    return RepoMeta(repo_id=repo_id, card_data=card, tags=tags or [])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Apache-2.0", ("apache-2.0",)),
        ("apache-2.0", ("apache-2.0",)),
        ("  APACHE-2.0 ", ("apache-2.0",)),
        ("MIT", ("mit",)),
        ("mit", ("mit",)),
        ("cc-by-nc-sa-4.0", ("cc-by-nc-sa-4.0",)),
        ("CC-BY-NC-4.0", ("cc-by-nc-4.0",)),
        ("gpl-3.0", ("gpl-3.0-only",)),  # the Hub's id → SPDX's current key
        ("agpl-3.0", ("agpl-3.0-only",)),
        ("bsd-3-clause", ("bsd-3-clause",)),
        ("llama3", ("llama3",)),
        ("llama3.1", ("llama3.1",)),
        ("Gemma", ("gemma",)),
        ("openrail", ("openrail",)),
        ("openrail++", ("openrail++",)),
        ("bigscience-openrail-m", ("bigscience-openrail-m",)),
        ("creativeml-openrail-m", ("creativeml-openrail-m",)),
        ("other", ("other",)),
        ("unknown", ("unknown",)),
        ("mit OR apache-2.0", ("mit", "apache-2.0")),  # each alternative is checked
        ("Apache License 2.0", ("apache license 2.0",)),  # not an id: kept so policy sees it as unknown
        ("other:Tongyi Qianwen", ("other:tongyi-qianwen",)),
        ("", ()),
        ("   ", ()),
    ],
)
def test_normalize_license(raw: str, expected: tuple[str, ...]) -> None:
    assert normalize_license(raw) == expected


def test_every_hub_specific_id_is_kept_as_is() -> None:
    for hub_id in HF_LICENSE_IDS:
        assert normalize_license(hub_id) == (hub_id,)
        assert normalize_license(hub_id.upper()) == (hub_id,)


def test_licenses_from_card_string_list_and_tags() -> None:
    assert licenses_of(repo({"license": "Apache-2.0"})) == ["apache-2.0"]
    assert licenses_of(repo({"license": ["MIT", "cc-by-4.0"]})) == ["mit", "cc-by-4.0"]
    # tags duplicate the card on the Hub: deduplicated, order kept
    assert licenses_of(repo({"license": "mit"}, tags=["license:mit", "license:cc-by-nc-4.0", "pytorch"])) == [
        "mit",
        "cc-by-nc-4.0",
    ]
    assert licenses_of(repo(None, tags=["license:llama3"])) == ["llama3"]
    assert licenses_of(repo(None)) == []
    assert licenses_of(repo({})) == []
    assert licenses_of(repo({"license": None})) == []


def test_other_with_license_name_and_link() -> None:
    card = {"license": "other", "license_name": "Tongyi Qianwen", "license_link": "https://x.example/LICENSE"}
    assert licenses_of(repo(card, tags=["license:other"])) == ["other:tongyi-qianwen"]
    assert licenses_of(repo({"license": "other"})) == ["other"]


def test_hostile_card_values_never_raise_and_fail_closed() -> None:
    for value in [42, {"a": 1}, [None, 3, ["mit"]], 1.5, True]:
        ids = licenses_of(repo({"license": value, "license_name": ["x"]}))
        assert all(isinstance(i, str) for i in ids)
        assert "mit" not in ids  # nested junk is never read as an allowed license


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ({"base_model": "meta-llama/Llama-2-7b-hf"}, ["meta-llama/Llama-2-7b-hf"]),
        ({"base_model": ["a/b", "c/d", "a/b"]}, ["a/b", "c/d"]),
        ({"base_model": "gpt2"}, ["gpt2"]),
        ({"base_model": "./local/path"}, []),
        ({"base_model": "org/model"}, []),  # itself
        ({"base_model": 7}, []),
        ({}, []),
    ],
)
def test_base_models_of(card: dict[str, Any], expected: list[str]) -> None:
    assert base_models_of(repo(card)) == expected


def test_base_models_of_without_card() -> None:
    assert base_models_of(repo(None)) == []


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Apache-2.0", "apache-2.0"),
        ("gpl-3.0", "gpl-3.0-only"),
        ("cc-by-nc-*", "cc-by-nc-*"),
        ("BSD-*", "bsd-*"),
        ("llama3", "llama3"),
        ("other:my-license", "other:my-license"),
        ("LicenseRef-Company", "licenseref-company"),
    ],
)
def test_validate_license_pattern_accepts(raw: str, normalised: str) -> None:
    assert validate_license_pattern(raw) == normalised


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("cc-by-nc", r"'cc-by-nc' is not a known license id or glob \(did you mean 'cc-by-nc-4.0'"),
        ("apache", r"'apache' is not a known license id or glob"),
        ("zz-nothing-*", r"'zz-nothing-\*' is a glob that matches no known license id"),
        ("mit OR apache-2.0", r"not a license id or glob"),
        ("", r"empty license id"),
    ],
)
def test_validate_license_pattern_rejects(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_license_pattern(raw)


def test_globs_match_the_non_commercial_family() -> None:
    for lid in ["cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-3.0"]:
        assert license_matches(lid, ["mit", "cc-by-nc-*"]) == "cc-by-nc-*"
    assert license_matches("cc-by-4.0", ["cc-by-nc-*"]) is None
    assert license_matches("cc-by-sa-4.0", ["cc-by-nc-*"]) is None


def test_known_ids_cover_spdx_and_hub() -> None:
    ids = known_ids()
    assert {"apache-2.0", "mit", "cc-by-nc-4.0", "llama3", "gemma", "other"} <= ids
    assert all(i == i.lower() for i in ids)
