"""Model card front matter: real-looking Hub READMEs, malformed and hostile blocks, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.policy.card import MAX_FRONT_MATTER_BYTES, CardStatus, front_matter, parse_card

LLAMA_FINETUNE = """---
language:
- en
license: llama3
library_name: transformers
base_model: meta-llama/Meta-Llama-3-8B
tags:
- facebook
- meta
- pytorch
datasets:
- HuggingFaceH4/ultrachat_200k
pipeline_tag: text-generation
model-index:
- name: my-finetune
  results:
  - task:
      type: text-generation
    metrics:
    - type: accuracy
      value: 0.61
---

# My fine-tune

Some prose with a --- horizontal rule below.

---
"""

QWEN_OTHER = """\ufeff---
license: other
license_name: tongyi-qianwen
license_link: https://huggingface.co/Qwen/Qwen-7B/blob/main/LICENSE
language: [zh, en]
---
# Qwen
"""

CRLF_CARD = "---\r\nlicense: mit\r\nthumbnail: https://x/y.png\r\n---\r\nHello\r\n"

DATED_CARD = """---
license: apache-2.0
release_date: 2024-05-01
---
"""


def test_real_looking_llama_card() -> None:
    data = front_matter(LLAMA_FINETUNE)
    assert data is not None
    assert data["license"] == "llama3"
    assert data["base_model"] == "meta-llama/Meta-Llama-3-8B"
    assert data["datasets"] == ["HuggingFaceH4/ultrachat_200k"]
    assert data["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.61
    assert "My fine-tune" not in str(data)  # the body is not part of the metadata


def test_bom_other_license_and_flow_lists() -> None:
    data = front_matter(QWEN_OTHER)
    assert data == {
        "license": "other",
        "license_name": "tongyi-qianwen",
        "license_link": "https://huggingface.co/Qwen/Qwen-7B/blob/main/LICENSE",
        "language": ["zh", "en"],
    }


def test_crlf_card() -> None:
    assert front_matter(CRLF_CARD) == {"license": "mit", "thumbnail": "https://x/y.png"}


def test_dates_become_strings() -> None:
    assert front_matter(DATED_CARD) == {"license": "apache-2.0", "release_date": "2024-05-01"}


def test_empty_block_is_an_empty_card() -> None:
    parsed = parse_card("---\n---\n# nothing\n")
    assert parsed.status is CardStatus.OK
    assert parsed.data == {}


@pytest.mark.parametrize("text", ["", "# Just a title\n", "Some text\n---\nlicense: mit\n---\n"])
def test_absent(text: str) -> None:
    parsed = parse_card(text)
    assert parsed.status is CardStatus.ABSENT
    assert parsed.data is None
    assert front_matter(text) is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("---\nlicense: [mit\n---\n", "invalid YAML front matter"),
        ("---\n- a\n- b\n---\n", "front matter is a list, not a mapping"),
        ("---\njust a string\n---\n", "front matter is a str, not a mapping"),
        ("---\nlicense: mit\n", "no closing '---' line"),
        ("---\na: &x [1, 2]\nb: *x\n---\n", "aliases are not allowed"),
        ("---\nx: !!python/object/apply:os.system ['true']\n---\n", "invalid YAML front matter"),
    ],
)
def test_malformed_is_reported_not_raised(text: str, error: str) -> None:
    parsed = parse_card(text)
    assert parsed.status is CardStatus.MALFORMED
    assert parsed.data is None
    assert error in parsed.error
    assert front_matter(text) is None


def test_billion_laughs_is_refused() -> None:
    lines = ["---", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
        prev = name
    lines.append("---")
    parsed = parse_card("\n".join(lines) + "\n")
    assert parsed.status is CardStatus.MALFORMED


def test_unclosed_huge_block_is_bounded() -> None:
    text = "---\n" + "k: v\n" * (MAX_FRONT_MATTER_BYTES // 5 + 10)
    parsed = parse_card(text)
    assert parsed.status is CardStatus.TOO_LARGE
    assert parsed.data is None


def test_deep_nesting_is_malformed() -> None:
    text = "---\nx: " + "[" * 200 + "]" * 200 + "\n---\n"
    assert parse_card(text).status is CardStatus.MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_never_raises_on_random_text(body: str) -> None:
    for text in (body, f"---\n{body}\n---\n"):
        parsed = parse_card(text)
        assert (parsed.data is None) == (parsed.status is not CardStatus.OK)
        if parsed.data is not None:
            assert isinstance(parsed.data, dict)
            assert all(isinstance(k, str) for k in parsed.data)
