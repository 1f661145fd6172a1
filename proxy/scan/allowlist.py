"""The reviewed pickle import lists: what a model pickle may import, and what is known to be a weapon.

`classify_global(module, name)` is the single decision point the pickle walker calls for every
`GLOBAL`/`STACK_GLOBAL`/`INST` target. Anything not explicitly allowed is a finding: known-dangerous
targets are critical, everything else unknown is high. The allowlist is short on purpose; widening it
needs a review of what calling (or instantiating) the target with attacker-chosen arguments can do.
"""

from __future__ import annotations

import _compat_pickle
import hashlib
from enum import StrEnum

# Exact (module, name) pairs that are safe to resolve *and call* with arbitrary arguments from a pickle.
# Reviewed: each one only rebuilds data (tensors, arrays, containers) and cannot reach code execution,
# file or network I/O on its own; callables it receives (e.g. _rebuild_from_type_v2's func) are separate
# globals that are vetted by this same list.
_TORCH_REBUILD = {
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_sparse_tensor",
    "_rebuild_sparse_csr_tensor",
    "_rebuild_qtensor",
    "_rebuild_nested_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_wrapper_subclass",
}
_TORCH_TYPES = {
    "Size",
    "device",
    "dtype",
    "layout",
    "strided",
    "sparse_coo",
    "memory_format",
    "contiguous_format",
    "channels_last",
    "channels_last_3d",
    "preserve_format",
    "per_tensor_affine",
    "per_channel_affine",
    "UntypedStorage",
    "TypedStorage",
}
_TORCH_STORAGES = {
    f"{kind}Storage"
    for kind in [
        "Double",
        "Float",
        "Half",
        "BFloat16",
        "Long",
        "Int",
        "Short",
        "Char",
        "Byte",
        "Bool",
        "ComplexDouble",
        "ComplexFloat",
        "QInt8",
        "QUInt8",
        "QInt32",
        "QUInt4x2",
        "QUInt2x4",
    ]
}
_TORCH_LEGACY_TENSORS = {
    f"{kind}Tensor" for kind in ["Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool"]
}  # the tensor-type slot of torch's legacy tar headers
_TORCH_DTYPES = set(
    [
        "float16",
        "float32",
        "float64",
        "bfloat16",
        "half",
        "float",
        "double",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
        "complex32",
        "complex64",
        "complex128",
        "cfloat",
        "cdouble",
        "qint8",
        "quint8",
        "qint32",
        "quint4x2",
        "quint2x4",
        "float8_e4m3fn",
        "float8_e5m2",
        "float8_e4m3fnuz",
        "float8_e5m2fnuz",
        "long",
        "int",
        "short",
    ]
)
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
_SAFE_BUILTINS = {
    "set",
    "frozenset",
    "bytearray",
    "bytes",
    "slice",
    "complex",
    "range",
    "list",
    "dict",
    "tuple",
    "bool",
    "int",
    "float",
    "str",
    "object",
}

ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {("torch._utils", n) for n in _TORCH_REBUILD}
    | {("torch", n) for n in _TORCH_TYPES | _TORCH_STORAGES | _TORCH_DTYPES | _TORCH_LEGACY_TENSORS}
    | {
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.tensor", "_rebuild_from_type_v2"),  # torch.load maps the old module name to torch._tensor
        ("torch.nn.parameter", "Parameter"),
        ("torch.serialization", "_get_layout"),
        ("torch.fx._symbolic_trace", "Tracer"),  # the default tracer a GraphModule re-traces with
        ("torch.storage", "UntypedStorage"),
        ("torch.storage", "TypedStorage"),
        ("torch.storage", "_TypedStorage"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("collections", "Counter"),
        ("collections", "deque"),
        ("copyreg", "_reconstructor"),
        ("copy_reg", "_reconstructor"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("joblib.numpy_pickle", "NDArrayWrapper"),
        ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"),
    }
    | {(m, n) for m in _NUMPY_CORE for n in ("_reconstruct", "scalar")}
    | {(m, "_frombuffer") for m in _NUMPY_NUMERIC}
    | {
        ("numpy.dtypes", f"{k}DType")
        for k in ["Float16", "Float32", "Float64", "Int8", "Int16", "Int32", "Int64", "Bool"]
    }
    | {(m, n) for m in ("builtins", "__builtin__") for n in _SAFE_BUILTINS}
    | {("__builtin__", "xrange")}  # range() in protocol 0-2 pickles
)

# Allowed only as the callable of one benign call shape, checked by the walker: numpy protocol-2 pickles
# encode raw bytes as _codecs.encode("<latin-1 text>", "latin1"). Anywhere else it is a finding.
CALL_PATTERN_ONLY: frozenset[tuple[str, str]] = frozenset({("_codecs", "encode")})

# FX GraphModule reducers: they `exec` Python source carried in the pickle; the walker analyses it.
FX_REDUCERS: frozenset[tuple[str, str]] = frozenset(
    {
        ("torch.fx.graph_module", "reduce_graph_module"),
        ("torch.fx.graph_module", "reduce_package_graph_module"),
        ("torch.fx.graph_module", "reduce_deploy_graph_module"),
    }
)

# Modules that turn any code into arbitrary code (process, OS, network, import, serialisation). One home for
# both scanners: `pysource` flags exactly these in exec'd FX source; the pickle rules add the rest below.
CODE_EXEC_MODULES = frozenset(
    [
        "os",
        "posix",
        "nt",
        "subprocess",
        "sys",
        "socket",
        "shutil",
        "runpy",
        "importlib",
        "pty",
        "ctypes",
        "pickle",
        "marshal",
        "webbrowser",
        "code",
        "codecs",
        "_codecs",
        "urllib",
        "http",
        "requests",
        "multiprocessing",
        "threading",
        "signal",
        "tempfile",
        "pathlib",
        "io",
        "glob",
        "asyncio",
        "platform",
        "builtins",
        "__builtin__",
    ]
)

# Whole modules (and their submodules) whose every attribute is a weapon or a loader of one.
_DANGEROUS_MODULES = CODE_EXEC_MODULES | frozenset(
    [
        "posixpath",
        "ntpath",
        "imp",
        "_pickle",
        "cPickle",
        "pickletools",
        "dill",
        "cloudpickle",
        "types",
        "_ctypes",
        "codeop",
        "pdb",
        "bdb",
        "_thread",
        "httplib",
        "urllib2",
        "aiohttp",
        "ftplib",
        "smtplib",
        "telnetlib",
        "_io",
        "fcntl",
        "resource",
        "inspect",
        "timeit",
        "trace",
        "profile",
        "cProfile",
        "doctest",
        "pydoc",
        "site",
        "zipimport",
        "venv",
        "ensurepip",
        "distutils",
        "setuptools",
        "pip",
        "_posixsubprocess",
        "_winapi",
        "commands",
        "popen2",
        "functools",
        "operator",
        "gc",
        "weakref",
        "_operator",
        "_functools",
        "zipfile",
        "tarfile",
        "sqlite3",
        "shelve",
        "dbm",
        "ssl",
        "select",
        "selectors",
        "mmap",
        "sysconfig",
        "linecache",
        "tokenize",
        "ast",
        "compile",
        "_imp",
        "_bootlocale",
        "xmlrpc",
        "logging",
    ]
)

# Specific dangerous attributes of modules that are otherwise just unknown (high).
_DANGEROUS_PAIRS = frozenset(
    {
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch.storage", "_load_from_bytes"),
        ("torch.jit", "load"),
        ("torch.hub", "load"),
        ("torch.hub", "load_state_dict_from_url"),
        ("torch.hub", "download_url_to_file"),
        ("torch._C", "_jit_set_fusion_strategy"),
        ("numpy", "load"),
        ("numpy", "loadtxt"),
        ("numpy", "fromfile"),
        ("numpy", "save"),
        ("numpy.lib.npyio", "load"),
        ("numpy.ctypeslib", "load_library"),
        ("pandas", "read_pickle"),
        ("pandas.io.pickle", "read_pickle"),
        ("joblib", "load"),
        ("joblib.numpy_pickle", "load"),
        ("keras.models", "load_model"),
        ("tensorflow.keras.models", "load_model"),
    }
)

# Call names that run, import, reach or delete things whatever they hang off; `pysource` flags exactly these
# (plus `load`) in exec'd FX source.
CODE_EXEC_CALLS = frozenset(
    [
        "exec",
        "eval",
        "compile",
        "__import__",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "open",
        "breakpoint",
        "input",
        "system",
        "popen",
        "spawn",
        "execv",
        "execve",
        "fork",
        "kill",
        "remove",
        "unlink",
        "rmtree",
        "urlopen",
        "run",
        "call",
        "check_output",
        "Popen",
        "loads",
        "import_module",
    ]
)

# Attribute names that are dangerous whatever module they hang off.
_DANGEROUS_NAMES = CODE_EXEC_CALLS | frozenset(
    [
        "popen2",
        "popen3",
        "popen4",
        "spawnl",
        "spawnv",
        "spawnve",
        "execl",
        "execlp",
        "execvp",
        "execfile",
        "apply",
        "load_module",
        "run_path",
        "run_module",
        "check_call",
        "getoutput",
        "getstatusoutput",
        "__getattribute__",
        "__reduce__",
        "__reduce_ex__",
        "__subclasses__",
        "__globals__",
        "__builtins__",
        "__code__",
        "__class__",
        "__bases__",
        "__mro__",
        "__dict__",
        "__init__",
        "__new__",
        "attrgetter",
        "methodcaller",
        "partial",
    ]
)


class GlobalClass(StrEnum):
    ALLOWED = "allowed"
    CALL_PATTERN = "call-pattern"  # allowed only in a benign call shape
    FX = "fx"  # analysed by source
    DANGEROUS = "dangerous"  # critical
    UNKNOWN = "unknown"  # high


_RANK = {
    GlobalClass.ALLOWED: 0,
    GlobalClass.CALL_PATTERN: 1,
    GlobalClass.FX: 2,
    GlobalClass.UNKNOWN: 3,
    GlobalClass.DANGEROUS: 4,
}


def _compat_name(module: str, name: str) -> tuple[str, str]:
    """What a Python 3 unpickler really imports for a protocol 0-2 name (fix_imports=True maps Python 2
    names, e.g. __builtin__.reduce -> functools.reduce)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def classify_global(module: str, name: str) -> GlobalClass:
    """Classify one import target: the name as written and as the unpickler's Python 2 mapping resolves
    it, whichever is worse. Dotted names are resolved by attribute walk at load time (protocol 4), so
    every segment of the full path counts, and no dotted name is ever on the allowlist."""
    as_written = _classify(module, name)
    mapped = _compat_name(module, name)
    if mapped == (module, name):
        return as_written
    as_loaded = _classify(*mapped)
    return max(as_written, as_loaded, key=_RANK.__getitem__)


def _classify(module: str, name: str) -> GlobalClass:
    if (module, name) in ALLOWED:
        return GlobalClass.ALLOWED
    if (module, name) in CALL_PATTERN_ONLY:
        return GlobalClass.CALL_PATTERN
    if (module, name) in FX_REDUCERS:
        return GlobalClass.FX
    if (module, name) in _DANGEROUS_PAIRS:
        return GlobalClass.DANGEROUS
    mod_parts = module.split(".")
    name_parts = name.split(".")
    if mod_parts[0] in _DANGEROUS_MODULES or any(p in _DANGEROUS_MODULES for p in mod_parts[1:]):
        return GlobalClass.DANGEROUS
    if any(p in _DANGEROUS_NAMES or p in _DANGEROUS_MODULES for p in name_parts):
        return GlobalClass.DANGEROUS
    if any(p.startswith("__") and p.endswith("__") for p in name_parts[1:]):
        return GlobalClass.DANGEROUS
    if not module or not name or "\n" in module or "\n" in name:
        return GlobalClass.DANGEROUS
    return GlobalClass.UNKNOWN


def ruleset_digest() -> str:
    """Short digest of the lists, recorded in the engine version so a list change triggers re-scans."""
    h = hashlib.sha256()
    for part in (ALLOWED, CALL_PATTERN_ONLY, FX_REDUCERS, _DANGEROUS_MODULES, _DANGEROUS_PAIRS, _DANGEROUS_NAMES):
        h.update(repr(sorted(part)).encode())
    return h.hexdigest()[:8]
