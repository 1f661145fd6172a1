"""Hostile and benign files for the non-pickle scanners, generated at test time (never committed).

Each `Case` builds the file's bytes from a marker path: every payload, if it were ever executed, would create
that marker (`touch <marker>`), so a test can prove that scanning ran nothing. A hostile case names the rule
and the severity its scanner must report; a benign case must produce nothing above `max_severity` (LOW,
except Python source, which is always custom code and so MEDIUM).

    tensors.py  safetensors, GGUF        graphs.py  TF SavedModel/GraphDef, ONNX
    code.py     JSON configs, Python     keras.py   Keras .h5 / .keras
    common.py   Case, chat templates     writers.py protobuf / GGUF / raw safetensors writers

`CASES` is the whole corpus (e.g. for a per-technique verdict table); `cases_for` selects by scanner module.
"""

from __future__ import annotations

from tests.corpus_formats.code import CONFIG_CASES, SOURCE_CASES
from tests.corpus_formats.common import BENIGN_TEMPLATES, Case, hostile_templates, ssti_template
from tests.corpus_formats.graphs import ONNX_CASES, SAVEDMODEL_CASES
from tests.corpus_formats.keras import KERAS_CASES
from tests.corpus_formats.tensors import GGUF_CASES, SAFETENSORS_CASES

CASES: list[Case] = [
    *SAFETENSORS_CASES,
    *GGUF_CASES,
    *CONFIG_CASES,
    *SOURCE_CASES,
    *KERAS_CASES,
    *SAVEDMODEL_CASES,
    *ONNX_CASES,
]

__all__ = ["BENIGN_TEMPLATES", "CASES", "Case", "cases_for", "hostile_templates", "ssti_template"]


def cases_for(scanner: str, *, hostile: bool) -> list[Case]:
    """The corpus cases one scanner module (`proxy.scan.<scanner>`) must handle."""
    return [c for c in CASES if c.scanner == scanner and c.hostile == hostile]
