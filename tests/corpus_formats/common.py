"""The corpus `Case` and the chat templates (benign, and hostile by technique) shared by all formats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proxy.models import Finding, Severity

# -- chat templates ---------------------------------------------------------------------------------------

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>'"
    " + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if "
    "loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role']"
    " == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and "
    "assistant roles are supported!') }}{% endif %}{% endfor %}"
)
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}"
    "\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)
TOOLS = (  # Qwen2.5/Llama-3.1 style: namespace, tojson, tool calls, loop controls, {% generation %}
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- for tool in tools %}{{- tool | tojson(indent=2) }}"
    "{%- endfor %}{%- endif %}{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1)"
    " %}{%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %}{%- if "
    "ns.multi_step_tool and message.role == 'user' %}{%- set ns.multi_step_tool = false %}{%- set "
    "ns.last_query_index = index %}{%- endif %}{%- endfor %}{%- for message in messages %}{%- if message.content"
    " is string %}{%- set content = message.content %}{%- else %}{%- set content = '' %}{%- endif %}{%- if "
    "'</think>' in content %}{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}"
    "{%- if message.tool_calls %}{%- for tool_call in message.tool_calls %}{{- tool_call.function.arguments | "
    "tojson }}{%- endfor %}{%- endif %}{% generation %}{{ content | trim }}{% endgeneration %}{%- if "
    "loop.last %}{% break %}{% endif %}{%- endfor %}{{ strftime_now('%d %b %Y') }}"
)
BENIGN_TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "mistral": MISTRAL, "zephyr": ZEPHYR, "tools": TOOLS}


def ssti_template(marker: str) -> str:
    """The CVE-2024-34359 payload shape (subclass walk to os.popen)."""
    return (
        "{% for x in ().__class__.__base__.__subclasses__() %}{% if 'warning' in x.__name__ %}"
        f"{{{{ x()._module.__builtins__['__import__']('os').popen('touch {marker}').read() }}}}"
        "{% endif %}{% endfor %}" + CHATML
    )


def hostile_templates(marker: str) -> dict[str, tuple[str, str, Severity]]:
    """name -> (template, expected rule, expected severity)."""
    popen = f".popen('touch {marker}').read()"
    return {
        "subclass-walk": (ssti_template(marker), "template.dunder-access", Severity.CRITICAL),
        "cycler-globals": (
            f"{{{{ cycler.__init__.__globals__.os{popen} }}}}",
            "template.global-escape",
            Severity.CRITICAL,
        ),
        "joiner-globals": (
            f"{{{{ joiner.__init__.__globals__['os']{popen} }}}}",
            "template.global-escape",
            Severity.CRITICAL,
        ),
        "lipsum-globals": (f"{{{{ lipsum.__globals__['os']{popen} }}}}", "template.global-escape", Severity.CRITICAL),
        "namespace-init": (
            f"{{{{ namespace.__init__.__globals__.os{popen} }}}}",
            "template.global-escape",
            Severity.CRITICAL,
        ),
        "attr-filter": ("{{ ''|attr('__class__')|attr('__mro__') }}", "template.dunder-access", Severity.CRITICAL),
        "concat-name": ("{{ ''|attr('__cla' ~ 'ss__') }}", "template.dunder-access", Severity.CRITICAL),
        "set-vars": (
            "{% set a = '__glo' %}{% set b = 'bals__' %}{{ messages[a ~ b] }}",
            "template.dunder-access",
            Severity.CRITICAL,
        ),
        "reversed": ("{{ ''|attr('__ssalc__'|reverse) }}", "template.dunder-access", Severity.CRITICAL),
        "percent-chr": (
            "{{ ''|attr('%c%cclass%c%c' % (95, 95, 95, 95)) }}",
            "template.dunder-access",
            Severity.CRITICAL,
        ),
        "join-parts": ("{{ ''|attr(['__cl', 'ass__']|join) }}", "template.dunder-access", Severity.CRITICAL),
        "map-attr": ("{{ messages|map('attr', '__class__')|list }}", "template.dunder-access", Severity.CRITICAL),
        "dynamic-attr": ("{{ ''|attr(messages[0]['content']) }}", "template.dynamic-attr", Severity.HIGH),
        "private-attr": ("{{ self._TemplateReference__context }}", "template.private-access", Severity.HIGH),
        "os-name": (f"{{{{ os{popen} }}}}", "template.dangerous-name", Severity.HIGH),
        "unparseable": ("{% for x in %}{{ x }}", "template.syntax", Severity.MEDIUM),
        "include": ("{% include 'other.jinja' %}", "template.include", Severity.MEDIUM),
    }


# -- cases -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    scanner: str  # module under proxy.scan
    build: Callable[[str], bytes]  # marker path -> file bytes
    rule: str | None = None  # hostile: the rule that must be reported...
    severity: Severity | None = None  # ...with exactly this severity
    max_severity: Severity = Severity.LOW  # benign: nothing above this

    @property
    def hostile(self) -> bool:
        return self.rule is not None

    def write(self, directory: Path, marker: str) -> Path:
        path = directory / self.name / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.build(marker))
        return path


def hostile(
    name: str, filename: str, scanner: str, rule: str, severity: Severity, build: Callable[[str], bytes]
) -> Case:
    return Case(name, filename, scanner, build, rule, severity)


def benign(
    name: str, filename: str, scanner: str, build: Callable[[str], bytes], max_severity: Severity = Severity.LOW
) -> Case:
    return Case(name, filename, scanner, build, max_severity=max_severity)


def assert_case(case: Case, findings: list[Finding]) -> None:
    """A hostile case reports its rule at its severity; a benign one stays at or below `max_severity`."""
    seen = [(f.severity.value, f.rule, f.message) for f in findings]
    assert isinstance(findings, list)
    assert all(isinstance(f, Finding) and f.engine == "hubgate" for f in findings), seen
    if case.hostile:
        assert any(f.rule == case.rule and f.severity == case.severity for f in findings), (case.name, seen)
    else:
        assert all(f.severity.rank <= case.max_severity.rank for f in findings), (case.name, seen)


def scan_case(case: Case, directory: Path) -> list[Finding]:
    """Write the case, scan it with its module, and prove no payload ran while scanning."""
    import importlib

    from proxy.scan.limits import DEFAULT_LIMITS

    marker = directory / "PWNED"
    path = case.write(directory, str(marker))
    findings: list[Finding] = importlib.import_module(f"proxy.scan.{case.scanner}").scan(path, DEFAULT_LIMITS)
    assert not marker.exists(), f"{case.name}: a payload ran during the scan"
    return findings
