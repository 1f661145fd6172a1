"""Generated scan corpus (pickle / torch / numpy / joblib / archive part): hostile and benign files.

Hostile payloads are harmless: if ever executed they create a marker file (the tests assert afterwards that
it does not exist). Nothing here is committed as a file; every sample is built at test time by `build_all`.
Benign samples are real outputs of torch.save / numpy / joblib that naive scanners flag.

    samples = build_all(tmp_path / "corpus", marker=tmp_path / "PWNED")
    for s in samples: s.path, s.technique, s.hostile, s.expect
"""

from __future__ import annotations

import bz2
import collections
import gzip
import io
import lzma
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proxy.models import ScanVerdict

UNSAFE = frozenset({ScanVerdict.UNSAFE})
ERROR = frozenset({ScanVerdict.ERROR})
CLEAN = frozenset({ScanVerdict.CLEAN})


@dataclass(frozen=True)
class Sample:
    technique: str
    path: Path
    hostile: bool
    expect: frozenset[ScanVerdict]


# -- payload primitives -------------------------------------------------------------------------------------


def _touch_cmd(marker: Path) -> str:
    return f"touch {marker}"


def _py_touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


class Reduce:
    """An object whose unpickling calls func(*args)."""

    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[object, ...]:
        return (self.func, self.args)


def _op_str(s: str) -> bytes:
    """SHORT_BINUNICODE / BINUNICODE for a str."""
    b = s.encode()
    return (b"\x8c" + bytes([len(b)]) if len(b) < 256 else b"X" + struct.pack("<I", len(b))) + b


def os_system(marker: Path) -> bytes:
    return pickle.dumps(Reduce(os.system, _touch_cmd(marker)), protocol=2)


def builtins_exec(marker: Path) -> bytes:
    import builtins

    return pickle.dumps(Reduce(builtins.exec, _py_touch(marker)), protocol=4)


def builtins_eval_proto0(marker: Path) -> bytes:
    import builtins

    return pickle.dumps(Reduce(builtins.eval, _py_touch(marker)), protocol=0)


def subprocess_call(marker: Path) -> bytes:
    import subprocess

    return pickle.dumps(Reduce(subprocess.call, ["touch", str(marker)]), protocol=3)


def runpy_code(marker: Path) -> bytes:
    import runpy

    run_module_code = runpy._run_module_code  # type: ignore[attr-defined]
    return pickle.dumps(Reduce(run_module_code, _py_touch(marker)), protocol=4)


def getattr_chain(marker: Path) -> bytes:
    """getattr(__import__('os'), 'system')(cmd), all by opcodes (protocol 2)."""
    return (
        b"\x80\x02c__builtin__\ngetattr\n(c__builtin__\n__import__\n(X\x02\x00\x00\x00ostRX\x06\x00\x00\x00systemtR("
        + b"X"
        + struct.pack("<I", len(_touch_cmd(marker)))
        + _touch_cmd(marker).encode()
        + b"tR."
    )


def builtin_alias_proto0(marker: Path) -> bytes:
    """Python 2 module name: protocol 0-2 unpicklers map __builtin__ to builtins."""
    return b"c__builtin__\neval\n(V" + _py_touch(marker).encode() + b"\ntR."


def stack_global_memo(marker: Path) -> bytes:
    """STACK_GLOBAL whose names come from the memo (stored early, fetched later)."""
    return (
        b"\x80\x04"
        + _op_str("posix")
        + b"\x94"  # MEMOIZE 0
        + b"0"  # POP
        + _op_str("system")
        + b"\x94"  # MEMOIZE 1
        + b"0"
        + b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
        + _op_str(_touch_cmd(marker))
        + b"\x85R."  # TUPLE1 REDUCE STOP
    )


def stack_global_computed(marker: Path) -> bytes:
    """STACK_GLOBAL whose module name is computed at load time by an allowed call: str('posix')."""
    return (
        b"\x80\x04"
        + _op_str("builtins")
        + _op_str("str")
        + b"\x93"
        + _op_str("posix")
        + b"\x85R"  # str('posix')
        + _op_str("system")
        + b"\x93"
        + _op_str(_touch_cmd(marker))
        + b"\x85R."
    )


def codecs_alias(marker: Path) -> bytes:
    """exec(_codecs.decode(<rot13 text>, 'rot13')): the payload text is not visible as a string."""
    import codecs

    hidden = codecs.encode(_py_touch(marker), "rot13")
    return (
        b"\x80\x04"
        + _op_str("builtins")
        + _op_str("exec")
        + b"\x93"
        + _op_str("_codecs")
        + _op_str("decode")
        + b"\x93"
        + _op_str(hidden)
        + _op_str("rot13")
        + b"\x86R\x85R."
    )


def operator_attrgetter(marker: Path) -> bytes:
    """attrgetter('system')(__import__('os'))(cmd)."""
    return (
        b"\x80\x04"
        + _op_str("operator")
        + _op_str("attrgetter")
        + b"\x93"
        + _op_str("system")
        + b"\x85R"
        + _op_str("builtins")
        + _op_str("__import__")
        + b"\x93"
        + _op_str("os")
        + b"\x85R\x85R"
        + _op_str(_touch_cmd(marker))
        + b"\x85R."
    )


def functools_partial(marker: Path) -> bytes:
    import builtins
    import functools

    class Call:
        def __reduce__(self) -> tuple[object, ...]:
            return (functools.partial(builtins.exec, _py_touch(marker)), ())

    return pickle.dumps(Call(), protocol=4)


def inst_opcode(marker: Path) -> bytes:
    """Protocol 0 INST: instantiates os.system directly."""
    return b"(V" + _touch_cmd(marker).encode() + b"\nios\nsystem\n."


def build_on_global(marker: Path) -> bytes:
    """BUILD on a class object: setattr on an allowlisted class rewires it for later code."""
    return (
        b"\x80\x04"
        + _op_str("collections")
        + _op_str("OrderedDict")
        + b"\x93N}"
        + _op_str("__repr__")
        + _op_str("x")
        + b"s\x86b."
    )


def truncated_tail(marker: Path) -> bytes:
    """The payload REDUCEs, then the stream breaks before STOP: loaders run it, then raise."""
    data = os_system(marker)
    return data[:-1] + b"\xff\xfe\xfd"


def unknown_global(marker: Path) -> bytes:
    """Not known-bad, just not on the allowlist: argparse.Namespace."""
    import argparse

    return pickle.dumps(argparse.Namespace(a=1), protocol=2)


def cloudpickle_lambda(marker: Path) -> bytes:
    import cloudpickle

    cmd = _touch_cmd(marker)
    return cloudpickle.dumps(lambda: os.system(cmd))


# -- containers -----------------------------------------------------------------------------------------


def torch_zip(obj: object) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def torch_legacy(obj: object) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def torch_legacy_tar(marker: Path | None = None) -> bytes:
    """torch's pre-0.4 tar checkpoint, written by hand (torch can still load it, no longer save it).

    With `marker`, the *second* storage header carries the payload, past the first block of raw storage
    bytes, where a scanner that stops at the first non-pickle byte never looks.
    """
    import torch

    storage_type, tensor_type = torch.FloatStorage, torch.FloatTensor  # type: ignore[attr-defined]
    second: object = (1, "cpu", storage_type)
    if marker is not None:
        second = (1, Reduce(os.system, _touch_cmd(marker)), storage_type)
    storages = pickle.dumps(2, protocol=2)
    for header in ((0, "cpu", storage_type), second):
        storages += pickle.dumps(header, protocol=2) + struct.pack("<q", 3) + struct.pack("<3f", 1, 2, 3)
    storages += pickle.dumps([], protocol=2)
    tensors = pickle.dumps(1, protocol=2) + pickle.dumps((2, 0, tensor_type), protocol=2)
    tensors += struct.pack("<ii", 1, 0) + struct.pack("<qqq", 3, 1, 0)

    class Persistent(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return "2" if obj == "tensor-2" else None

    main = io.BytesIO()
    Persistent(main, protocol=2).dump({"w": "tensor-2"})
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    members = {"sys_info": sys_info, "pickle": main.getvalue(), "storages": storages, "tensors": tensors}
    return tar_of(members, mode="w")


def zip_with(base: bytes, name: str, data: bytes) -> bytes:
    buf = io.BytesIO(base)
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr(name, data)
    return buf.getvalue()


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_bomb(inflated_mb: int = 50) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("weights.bin", "w") as w:
        chunk = b"\0" * (1 << 20)
        for _ in range(inflated_mb):
            w.write(chunk)
    return buf.getvalue()


def gzip_bomb(inflated_mb: int = 40) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        chunk = b"\0" * (1 << 20)
        for _ in range(inflated_mb):
            gz.write(chunk)
    return buf.getvalue()


def nested_zips(depth: int, inner: bytes) -> bytes:
    data = inner
    for i in range(depth):
        data = zip_of({f"level{i}.zip": data}, zipfile.ZIP_STORED)
    return data


def tar_of(members: dict[str, bytes], symlinks: dict[str, str] | None = None, mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def fx_graph_module_payload(marker: Path) -> object:
    """An object that pickles exactly like a GraphModule, with hostile code in its `_code`."""
    from torch.fx.graph_module import reduce_graph_module

    code = f"import os\nos.system({_touch_cmd(marker)!r})\ndef forward(self, x):\n    return x\n"

    class FakeGraphModule:
        def __reduce__(self) -> tuple[object, ...]:
            return (reduce_graph_module, ({"_code": code, "training": False}, ""))

    return FakeGraphModule()


def numpy_object_npy(obj: object) -> bytes:
    import numpy as np

    arr = np.empty(2, dtype=object)
    arr[0] = 1
    arr[1] = obj
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def joblib_bytes(obj: object, compress: object = 0) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=compress)  # type: ignore[arg-type]
    return buf.getvalue()


# -- benign objects -----------------------------------------------------------------------------------------


def small_module() -> object:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def optimizer_state() -> object:
    import torch

    model = small_module()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # type: ignore[attr-defined]
    model(torch.randn(5, 4)).sum().backward()  # type: ignore[operator]
    opt.step()
    return opt.state_dict()


def mixed_state() -> object:
    import torch

    return {
        "epoch": 3,
        "weights": collections.OrderedDict(w=torch.ones(2, 2, dtype=torch.bfloat16), b=torch.zeros(2)),
        "meta": {"names": ["a", "b"], "flags": (True, None), "ratio": 0.5, "c": 1 + 2j, "raw": b"\x00\x01"},
        "ids": torch.arange(5, dtype=torch.int64),
        "shape": torch.Size([2, 3]),
        "set": {1, 2},
    }


# -- the corpus ---------------------------------------------------------------------------------------------


def build_all(root: Path, marker: Path) -> list[Sample]:
    """Write every sample under `root`; return them with their expected verdicts."""
    import numpy as np
    import torch

    root.mkdir(parents=True, exist_ok=True)
    m = marker
    out: list[Sample] = []

    def add(technique: str, filename: str, data: bytes, hostile: bool, expect: frozenset[ScanVerdict]) -> None:
        path = root / filename
        path.write_bytes(data)
        out.append(Sample(technique, path, hostile, expect))

    evil = os_system(m)
    # raw pickle techniques
    add("os.system (proto 2)", "os_system.pkl", evil, True, UNSAFE)
    add("builtins.exec (proto 4)", "exec.pkl", builtins_exec(m), True, UNSAFE)
    add("builtins.eval (proto 0)", "eval0.pkl", builtins_eval_proto0(m), True, UNSAFE)
    add("subprocess.call (proto 3)", "subprocess.pkl", subprocess_call(m), True, UNSAFE)
    add("runpy._run_module_code", "runpy.pkl", runpy_code(m), True, UNSAFE)
    add("getattr(__import__('os'),'system')", "getattr.pkl", getattr_chain(m), True, UNSAFE)
    add("__builtin__ alias (proto 0)", "builtin_alias.pkl", builtin_alias_proto0(m), True, UNSAFE)
    add("STACK_GLOBAL names from memo", "memo_global.pkl", stack_global_memo(m), True, UNSAFE)
    add("STACK_GLOBAL computed name", "computed_global.pkl", stack_global_computed(m), True, UNSAFE)
    add("_codecs rot13 + exec", "codecs.pkl", codecs_alias(m), True, UNSAFE)
    add("operator.attrgetter chain", "attrgetter.pkl", operator_attrgetter(m), True, UNSAFE)
    add("functools.partial(exec)", "partial.pkl", functools_partial(m), True, UNSAFE)
    add("INST opcode os.system", "inst.pkl", inst_opcode(m), True, UNSAFE)
    add("BUILD on a class", "build_global.pkl", build_on_global(m), True, UNSAFE)
    add("payload before a broken tail", "truncated.pkl", truncated_tail(m), True, UNSAFE)
    add("unknown global (argparse.Namespace)", "namespace.pkl", unknown_global(m), True, UNSAFE)
    add("cloudpickle lambda", "lambda.cloudpkl", cloudpickle_lambda(m), True, UNSAFE)
    add("pickle named .txt", "notes.txt", builtin_alias_proto0(m), True, UNSAFE)
    add("pickle.gz", "model.pkl.gz", gzip.compress(evil), True, UNSAFE)
    # torch / numpy / joblib
    add("torch zip, payload in data.pkl", "evil_torch.pt", torch_zip(Reduce(os.system, _touch_cmd(m))), True, UNSAFE)
    add(
        "torch zip, payload in extra member",
        "extra_member.pt",
        zip_with(torch_zip(small_module().state_dict()), "archive/extra.pkl", evil),  # type: ignore[attr-defined]
        True,
        UNSAFE,
    )
    add("torch legacy tar, 2nd storage header", "legacy_tar_evil.pt", torch_legacy_tar(m), True, UNSAFE)
    add("torch legacy format", "legacy_evil.bin", torch_legacy(Reduce(os.system, _touch_cmd(m))), True, UNSAFE)
    add("FX GraphModule hostile code", "fx.pt", torch_zip(fx_graph_module_payload(m)), True, UNSAFE)
    add("numpy object array", "objects.npy", numpy_object_npy(Reduce(os.system, _touch_cmd(m))), True, UNSAFE)
    payload = {"x": np.arange(10), "p": Reduce(os.system, _touch_cmd(m))}
    add("joblib uncompressed", "model.joblib", joblib_bytes(payload), True, UNSAFE)
    for comp in ("zlib", "gzip", "bz2", "xz", "lzma"):
        add(f"joblib {comp}", f"model_{comp}.joblib", joblib_bytes(payload, (comp, 3)), True, UNSAFE)
    # containers
    add("zip named .safetensors", "model.safetensors", zip_of({"model.pkl": evil}), True, UNSAFE)
    add(
        "polyglot pickle + torch zip",
        "polyglot.bin",
        evil + torch_zip(small_module().state_dict()),  # type: ignore[attr-defined]
        True,
        UNSAFE,
    )
    add("zip bomb (ratio)", "bomb.zip", zip_bomb(), True, UNSAFE)
    add("gzip stream bomb", "weights.bin.gz", gzip_bomb(), True, UNSAFE)
    add("nested zips past depth limit", "deep.zip", nested_zips(6, zip_of({"a.pkl": evil})), True, ERROR)
    add("zip path traversal", "traversal.zip", zip_of({"../../evil.pkl": b"just text\n"}), True, UNSAFE)
    add("tar.gz with symlink", "links.tar.gz", tar_of({"ok.txt": b"hi\n"}, {"evil": "/etc/passwd"}), True, UNSAFE)
    add("tar.xz with pickle", "ckpt.tar.xz", tar_of({"ckpt/model.pkl": evil}, mode="w:xz"), True, UNSAFE)
    add("bz2 pickle", "model.pkl.bz2", bz2.compress(evil), True, UNSAFE)
    add("xz pickle", "model.pkl.xz", lzma.compress(evil), True, UNSAFE)
    add("zlib pickle", "model.pkl.z", zlib.compress(evil), True, UNSAFE)
    add("7z archive (unsupported)", "weights.7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + os.urandom(64), True, ERROR)

    # benign: what naive scanners flag
    model = small_module()
    add("benign torch state_dict", "state_dict.pt", torch_zip(model.state_dict()), False, CLEAN)  # type: ignore[attr-defined]
    add("benign optimizer state", "optimizer.pt", torch_zip(optimizer_state()), False, CLEAN)
    add("benign mixed checkpoint", "checkpoint.pt", torch_zip(mixed_state()), False, CLEAN)
    add("benign legacy state_dict", "legacy.bin", torch_legacy(model.state_dict()), False, CLEAN)  # type: ignore[attr-defined]
    add("benign legacy tar checkpoint", "legacy_tar.pt", torch_legacy_tar(), False, CLEAN)
    add("benign numpy .npy", "array.npy", _npy(np.arange(12.0).reshape(3, 4)), False, CLEAN)
    add("benign numpy .npz", "arrays.npz", _npz(a=np.zeros(3), b=np.ones((2, 2), dtype=np.int8)), False, CLEAN)
    for proto in (0, 2, 4, 5):
        arrays = collections.OrderedDict(a=np.arange(6).reshape(2, 3), b=np.float32(1.5), c=np.dtype("f8"))
        add(
            f"benign numpy pickle proto {proto}",
            f"arrays_p{proto}.pkl",
            pickle.dumps(arrays, protocol=proto),
            False,
            CLEAN,
        )
    add("benign OrderedDict pickle", "od.pkl", pickle.dumps(collections.OrderedDict(a=[1, 2.5, "x"])), False, CLEAN)
    add("benign joblib numpy", "array.joblib", joblib_bytes(np.arange(100.0)), False, CLEAN)
    add("benign joblib zlib", "array_z.joblib", joblib_bytes({"w": np.ones((4, 4))}, ("zlib", 3)), False, CLEAN)
    add("benign pickle.gz", "arrays.pkl.gz", gzip.compress(pickle.dumps(np.arange(4))), False, CLEAN)
    add("benign zip of npy", "bundle.zip", zip_of({"a.npy": _npy(np.zeros(2))}), False, CLEAN)
    add("benign torch bfloat16 tensor", "bf16.pt", torch_zip(torch.ones(3, dtype=torch.bfloat16)), False, CLEAN)
    return out


def _npy(arr: object) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, arr)  # type: ignore[arg-type]
    return buf.getvalue()


def _npz(**arrays: object) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


# -- the other engines run standalone, for the corpus table -------------------------------------------------


def fickling_standalone(path: Path) -> str:
    """fickling as a user runs it (`fickling --check-safety`-like): unsafe / clean / error."""
    try:
        import fickling

        if zipfile.is_zipfile(path):
            results = fickling.scan_zip_archive(str(path), graceful=True)
            try:
                from fickling.pytorch import PyTorchModelWrapper

                wrapped = PyTorchModelWrapper(path)
                from fickling.analysis import Severity as FS
                from fickling.analysis import check_safety

                if check_safety(wrapped.pickled).severity >= FS.LIKELY_UNSAFE:
                    return "unsafe"
            except Exception:
                pass
            if any(not r.is_safe for r in results.values()):
                return "unsafe"
            return "error" if any(r.errors for r in results.values()) else "clean"
        res = fickling.scan_file(str(path), graceful=True)
        if not res.is_safe:
            return "unsafe"
        return "error" if res.errors else "clean"
    except Exception:
        return "error"


def modelscan_standalone(path: Path) -> str:
    """modelscan's library API on the file as named (it picks scanners by extension)."""
    try:
        from modelscan.modelscan import ModelScan

        result = ModelScan().scan(path)
        if result["summary"]["total_issues"]:
            return "unsafe"
        if result.get("errors"):
            return "error"
        if not result["summary"]["scanned"]["total_scanned"]:
            return "skipped"
        return "clean"
    except Exception:
        return "error"
