"""The allowlist pickle engine (ours, authoritative for "safe"): a symbolic pickle machine that never loads.

It walks opcodes with a bounded reader (`proxy.scan.opcodes`) and simulates the unpickler's stack and memo
just enough to know, for every import and every call, *what* is imported and *what* is called with *what*:
`GLOBAL`, `STACK_GLOBAL` (names resolved through the memo; names that are computed at load time are
critical), `INST`, `OBJ`, `REDUCE`, `BUILD`, `NEWOBJ(_EX)`. Each target is classified by
`proxy.scan.allowlist`. FX GraphModule reducers carry Python source that is `exec`'d on load: that source
is analysed (`proxy.scan.pysource`). joblib's inline array payloads are skipped by their declared size.

A pickle that breaks is scanned up to the break (payloads run before a broken tail) and the breakage is a
finding. Limits (bytes, opcodes, memo) stop the walk and mark it incomplete: indeterminate, never clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from proxy.models import Finding, Severity
from proxy.scan.allowlist import GlobalClass, classify_global
from proxy.scan.limits import ScanLimits
from proxy.scan.opcodes import BudgetExceeded, CountingReader, OpcodeError, Skipped, iter_opcodes
from proxy.scan.pysource import analyse_exec_source

ENGINE = "hubgate"
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_KEEP_ITEMS = 256  # container items kept for inspection; the rest are counted, not stored
_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}


@dataclass(eq=False)
class Global:
    module: str
    name: str
    cls: GlobalClass

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call:
    """Result of calling/instantiating `func` with `args` (REDUCE, NEWOBJ, OBJ, INST)."""

    func: object
    args: object
    state: object = None


@dataclass(eq=False)
class Seq:
    kind: str  # tuple | list | set
    items: list[object] = field(default_factory=list)
    dropped: int = 0

    def add(self, values: Iterable[object]) -> None:
        for v in values:
            if len(self.items) < _KEEP_ITEMS:
                self.items.append(v)
            else:
                self.dropped += 1


@dataclass(eq=False)
class Dct:
    pairs: list[tuple[object, object]] = field(default_factory=list)

    def set(self, k: object, v: object) -> None:
        if len(self.pairs) < _KEEP_ITEMS:
            self.pairs.append((k, v))

    def get(self, key: str) -> object:
        for k, v in self.pairs:
            if k == key:
                return v
        return None


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


OPAQUE = _Opaque()
_MARK = object()


class _Broken(Exception):
    """The simulated unpickler would raise here (stack underflow, bad memo, ...)."""


@dataclass
class PickleScan:
    findings: list[Finding] = field(default_factory=list)
    globals_seen: set[str] = field(default_factory=set)
    pickles: int = 0
    opcodes: int = 0
    bytes_walked: int = 0
    complete: bool = True  # False: a limit stopped us; the verdict must not be clean
    gaps: list[tuple[int, int]] = field(default_factory=list)  # non-pickle spans skipped (joblib arrays)
    first_value: object = None

    @property
    def flagged(self) -> bool:
        return any(f.severity.rank >= Severity.HIGH.rank for f in self.findings if f.engine == ENGINE)


class _Machine:
    _handlers: dict[str, Callable[[_Machine, object, int], object]]

    def __init__(self, result: PickleScan, location: str, limits: ScanLimits) -> None:
        self.r: CountingReader | None = None
        self.out = result
        self.location = location
        self.limits = limits
        self._seen_rules: set[tuple[str, str]] = set()
        self.degraded = False  # the simulation lost track after a structural error
        self.stack: list[object] = []
        self.meta: list[list[object]] = []
        self.memo: dict[int, object] = {}

    # -- findings -----------------------------------------------------------------------------------------
    def finding(self, severity: Severity, rule: str, message: str, pos: int | None = None) -> None:
        key = (rule, message)
        if key in self._seen_rules:
            return
        self._seen_rules.add(key)
        loc = self.location if pos is None else f"{self.location}@{pos}"
        self.out.findings.append(Finding(engine=ENGINE, severity=severity, rule=rule, message=message, location=loc))

    def check_global(self, module: str, name: str, pos: int) -> Global:
        cls = classify_global(module, name)
        g = Global(module, name, cls)
        self.out.globals_seen.add(g.dotted)
        if cls is GlobalClass.DANGEROUS:
            self.finding(
                Severity.CRITICAL, "pickle.dangerous-global", f"imports {g.dotted} (code execution / I/O)", pos
            )
        elif cls is GlobalClass.UNKNOWN:
            self.finding(Severity.HIGH, "pickle.unknown-global", f"imports {g.dotted}, not on the allowlist", pos)
        return g

    def consume(self, values: Iterable[object], pos: int) -> None:
        """Call-pattern-only callables may only ever be called, never passed around."""
        for v in values:
            if isinstance(v, Global) and v.cls is GlobalClass.CALL_PATTERN:
                self.finding(
                    Severity.HIGH, "pickle.call-pattern", f"{v.dotted} used outside its benign call shape", pos
                )

    # -- calls ---------------------------------------------------------------------------------------------
    def on_call(self, func: object, args: object, pos: int, how: str) -> Call:
        if isinstance(args, Seq):
            self.consume(args.items, pos)
        if not isinstance(func, Global):
            self.finding(
                Severity.CRITICAL,
                "pickle.dynamic-call",
                f"{how} on a value computed at load time ({type(func).__name__}), not an imported name",
                pos,
            )
        elif func.cls is GlobalClass.CALL_PATTERN:
            items = args.items if isinstance(args, Seq) else []
            benign = (
                len(items) == 2
                and isinstance(items[0], str)
                and isinstance(items[1], str)
                and items[1].lower() in _LATIN1
            )
            if not benign:
                self.finding(Severity.HIGH, "pickle.call-pattern", f"{func.dotted} called with unusual arguments", pos)
        elif func.cls is GlobalClass.FX:
            self.on_fx(func, args, pos)
        return Call(func, args)

    def on_fx(self, func: Global, args: object, pos: int) -> None:
        sources = [s for s in _strings(args, depth=4) if "def " in s or "import " in s]
        if func.name != "reduce_graph_module" or not sources:
            self.finding(
                Severity.HIGH,
                "pickle.fx-unanalysable",
                f"{func.dotted} executes code this scanner cannot see (no embedded source found)",
                pos,
            )
            return
        issues = analyse_exec_source("\n".join(sources), self.limits.max_source_bytes)
        for severity, message in issues:
            self.finding(severity, "pickle.fx-code", f"FX GraphModule source: {message}", pos)
        if not issues:
            self.finding(
                Severity.MEDIUM,
                "pickle.fx-code",
                "FX GraphModule: Python source is exec'd on load (analysed: no dangerous calls found)",
                pos,
            )

    # -- the walk ------------------------------------------------------------------------------------------
    def walk_one(self, r: CountingReader) -> object:
        """Walk one pickle up to and including STOP; returns the simulated result."""
        self.r = r
        self.stack = []
        self.meta = []
        self.memo = {}
        out = self.out
        max_ops = self.limits.max_pickle_opcodes
        handlers = self._handlers
        for op, arg, pos in iter_opcodes(r, max_line=1 << 20, max_str=self.limits.max_source_bytes):
            out.opcodes += 1
            if out.opcodes > max_ops:
                raise BudgetExceeded(f"more than {max_ops} opcodes")
            name = op.name
            if self.degraded:
                self.degraded_op(name, arg, pos)
                if name == "STOP":
                    return OPAQUE
                continue
            try:
                result = handlers.get(name, _Machine.op_push)(self, arg, pos)
            except (_Broken, IndexError) as exc:
                self.finding(
                    Severity.MEDIUM,
                    "pickle.malformed",
                    f"{name}: {exc or 'stack underflow'} (an unpickler stops here)",
                    pos,
                )
                self.degraded = True
                if name == "STOP":
                    return OPAQUE
                continue
            if name == "STOP":
                return result
        return OPAQUE  # pragma: no cover - iter_opcodes always ends at STOP or raises

    def degraded_op(self, name: str, arg: object, pos: int) -> None:
        """After the stack is lost we still flag every import; names we cannot resolve are critical."""
        if name in ("GLOBAL", "INST") and isinstance(arg, str):
            module, _, gname = arg.partition(" ")
            self.check_global(module, gname, pos)
        elif name == "STACK_GLOBAL":
            self.finding(Severity.CRITICAL, "pickle.dynamic-global", "STACK_GLOBAL with unresolvable names", pos)

    # One handler per opcode family, mirroring pickle._Unpickler; unlisted opcodes push their argument.
    def pop_mark(self) -> list[object]:
        if not self.meta:
            raise _Broken("no MARK on the stack")
        items = self.stack
        self.stack = self.meta.pop()
        return items

    def op_push(self, arg: object, pos: int) -> None:
        self.stack.append(OPAQUE if isinstance(arg, Skipped) else arg)

    def op_proto(self, arg: object, pos: int) -> None:
        if not isinstance(arg, int) or arg > 5:
            raise _Broken(f"unsupported protocol {arg}")

    def op_nothing(self, arg: object, pos: int) -> None:
        return None

    def op_stop(self, arg: object, pos: int) -> object:
        value = self.stack.pop()
        self.consume([value], pos)
        return value

    def op_mark(self, arg: object, pos: int) -> None:
        self.meta.append(self.stack)
        self.stack = []

    def op_none(self, arg: object, pos: int) -> None:
        self.stack.append(None)

    def op_true(self, arg: object, pos: int) -> None:
        self.stack.append(True)

    def op_false(self, arg: object, pos: int) -> None:
        self.stack.append(False)

    def op_empty_list(self, arg: object, pos: int) -> None:
        self.stack.append(Seq("list"))

    def op_empty_tuple(self, arg: object, pos: int) -> None:
        self.stack.append(Seq("tuple"))

    def op_empty_set(self, arg: object, pos: int) -> None:
        self.stack.append(Seq("set"))

    def op_empty_dict(self, arg: object, pos: int) -> None:
        self.stack.append(Dct())

    def _seq_from_mark(self, kind: str, pos: int) -> None:
        items = self.pop_mark()
        self.consume(items, pos)
        seq = Seq(kind)
        seq.add(items)
        self.stack.append(seq)

    def op_tuple(self, arg: object, pos: int) -> None:
        self._seq_from_mark("tuple", pos)

    def op_list(self, arg: object, pos: int) -> None:
        self._seq_from_mark("list", pos)

    def op_frozenset(self, arg: object, pos: int) -> None:
        self._seq_from_mark("set", pos)

    def _tuple_n(self, n: int, pos: int) -> None:
        stack = self.stack
        if len(stack) < n:
            raise _Broken("stack underflow")
        items = stack[-n:]
        del stack[-n:]
        self.consume(items, pos)
        seq = Seq("tuple")
        seq.add(items)
        stack.append(seq)

    def op_tuple1(self, arg: object, pos: int) -> None:
        self._tuple_n(1, pos)

    def op_tuple2(self, arg: object, pos: int) -> None:
        self._tuple_n(2, pos)

    def op_tuple3(self, arg: object, pos: int) -> None:
        self._tuple_n(3, pos)

    def op_dict(self, arg: object, pos: int) -> None:
        items = self.pop_mark()
        self.consume(items, pos)
        d = Dct()
        for i in range(0, len(items) - 1, 2):
            d.set(items[i], items[i + 1])
        self.stack.append(d)

    def op_append(self, arg: object, pos: int) -> None:
        value = self.stack.pop()
        self.consume([value], pos)
        self._extend(self.stack[-1], [value])

    def op_appends(self, arg: object, pos: int) -> None:
        items = self.pop_mark()
        self.consume(items, pos)
        self._extend(self.stack[-1], items)

    def op_setitem(self, arg: object, pos: int) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self.consume([key, value], pos)
        self._setitems(self.stack[-1], [key, value])

    def op_setitems(self, arg: object, pos: int) -> None:
        items = self.pop_mark()
        self.consume(items, pos)
        self._setitems(self.stack[-1], items)

    def op_pop(self, arg: object, pos: int) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self, arg: object, pos: int) -> None:
        self.pop_mark()

    def op_dup(self, arg: object, pos: int) -> None:
        self.stack.append(self.stack[-1])

    def op_get(self, arg: object, pos: int) -> None:
        key = int(arg) if isinstance(arg, (int, str)) else -1
        if key not in self.memo:
            raise _Broken(f"memo key {key} not defined")
        self.stack.append(self.memo[key])

    def _put(self, key: int) -> None:
        if key < 0:
            raise _Broken("negative memo key")
        memo = self.memo
        if key not in memo and len(memo) >= self.limits.max_memo_entries:
            raise BudgetExceeded(f"more than {self.limits.max_memo_entries} memo entries")
        memo[key] = self.stack[-1]

    def op_put(self, arg: object, pos: int) -> None:
        self._put(int(arg) if isinstance(arg, (int, str)) else -1)

    def op_memoize(self, arg: object, pos: int) -> None:
        self._put(len(self.memo))

    def op_global(self, arg: object, pos: int) -> None:
        module, _, gname = str(arg).partition(" ")
        self.stack.append(self.check_global(module, gname, pos))

    def op_stack_global(self, arg: object, pos: int) -> None:
        gname = self.stack.pop()
        module = self.stack.pop()
        if not (isinstance(module, str) and isinstance(gname, str)):
            self.finding(
                Severity.CRITICAL,
                "pickle.dynamic-global",
                "STACK_GLOBAL names are computed at load time, not constant strings",
                pos,
            )
            self.stack.append(OPAQUE)
        else:
            self.stack.append(self.check_global(module, gname, pos))

    def op_inst(self, arg: object, pos: int) -> None:
        module, _, gname = str(arg).partition(" ")
        items = self.pop_mark()
        g = self.check_global(module, gname, pos)
        args = Seq("tuple")
        args.add(items)
        self.stack.append(self.on_call(g, args, pos, "INST"))

    def op_obj(self, arg: object, pos: int) -> None:
        items = self.pop_mark()
        if not items:
            raise _Broken("OBJ without a class")
        args = Seq("tuple")
        args.add(items[1:])
        self.stack.append(self.on_call(items[0], args, pos, "OBJ"))

    def op_newobj(self, arg: object, pos: int) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self.on_call(cls, args, pos, "NEWOBJ"))

    def op_newobj_ex(self, arg: object, pos: int) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if isinstance(kwargs, Dct):
            self.consume([v for _, v in kwargs.pairs], pos)
        self.stack.append(self.on_call(cls, args, pos, "NEWOBJ_EX"))

    def op_reduce(self, arg: object, pos: int) -> None:
        args = self.stack.pop()
        func = self.stack.pop()
        self.stack.append(self.on_call(func, args, pos, "REDUCE"))

    def op_build(self, arg: object, pos: int) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        self.consume([state], pos)
        if isinstance(state, Dct):
            self.consume([v for _, v in state.pairs], pos)
        if isinstance(inst, Call):
            inst.state = state
            self.after_build(inst, pos)
        elif isinstance(inst, Global):
            # setattr on a class or function: rewires code that runs later
            self.finding(Severity.CRITICAL, "pickle.build-on-global", f"BUILD sets attributes of {inst.dotted}", pos)
        elif inst is not OPAQUE:
            raise _Broken(f"BUILD on {type(inst).__name__}")

    def op_persid(self, arg: object, pos: int) -> None:
        self.stack.append(OPAQUE)  # torch maps persistent ids to storages; no code runs

    def op_binpersid(self, arg: object, pos: int) -> None:
        self.stack.pop()
        self.stack.append(OPAQUE)

    def op_ext(self, arg: object, pos: int) -> None:
        self.finding(Severity.HIGH, "pickle.extension", f"extension code {arg}: import via the copyreg registry", pos)
        self.stack.append(OPAQUE)

    def op_next_buffer(self, arg: object, pos: int) -> None:
        self.stack.append(OPAQUE)

    def _extend(self, target: object, items: list[object]) -> None:
        if isinstance(target, Seq) and target.kind != "tuple":
            target.add(items)
        elif not isinstance(target, Call) and target is not OPAQUE:
            raise _Broken(f"append to {type(target).__name__}")

    def _setitems(self, target: object, items: list[object]) -> None:
        if isinstance(target, Dct):
            for i in range(0, len(items) - 1, 2):
                target.set(items[i], items[i + 1])
        elif not isinstance(target, Call) and target is not OPAQUE:
            raise _Broken(f"setitem on {type(target).__name__}")

    # -- joblib ---------------------------------------------------------------------------------------------
    def after_build(self, inst: Call, pos: int) -> None:
        func = inst.func
        if not (isinstance(func, Global) and func.name in ("NumpyArrayWrapper",) and "joblib" in func.module):
            return
        assert self.r is not None
        state = inst.state if isinstance(inst.state, Dct) else Dct()
        layout = _joblib_layout(state)
        if layout is None:
            self.finding(
                Severity.HIGH,
                "pickle.joblib-layout",
                "joblib array wrapper with an unreadable layout: the bytes after it cannot be scanned",
                pos,
            )
            raise BudgetExceeded("unparseable joblib array layout")
        nbytes, has_object, aligned = layout
        if has_object:
            # object arrays are a nested pickle stream in the middle of this one
            self.out.pickles += 1
            nested = _Machine(self.out, f"{self.location}+joblib-object-array", self.limits)
            nested.walk_one(self.r)
            return
        gap_start = self.r.pos
        if aligned:
            pad = self.r.read(1)
            if len(pad) != 1:
                raise OpcodeError("end of data inside joblib padding", self.r.pos, eof=True)
            self.r.skip(pad[0])
        got = self.r.skip(nbytes)
        if got != nbytes:
            raise OpcodeError(f"end of data inside a joblib array ({nbytes} bytes declared)", self.r.pos, eof=True)
        self.out.gaps.append((gap_start, self.r.pos))


_HANDLERS: dict[str, Callable[[_Machine, object, int], object]] = {
    "PROTO": _Machine.op_proto,
    "FRAME": _Machine.op_nothing,
    "READONLY_BUFFER": _Machine.op_nothing,
    "STOP": _Machine.op_stop,
    "MARK": _Machine.op_mark,
    "NONE": _Machine.op_none,
    "NEWTRUE": _Machine.op_true,
    "NEWFALSE": _Machine.op_false,
    "EMPTY_LIST": _Machine.op_empty_list,
    "EMPTY_TUPLE": _Machine.op_empty_tuple,
    "EMPTY_SET": _Machine.op_empty_set,
    "EMPTY_DICT": _Machine.op_empty_dict,
    "TUPLE": _Machine.op_tuple,
    "LIST": _Machine.op_list,
    "FROZENSET": _Machine.op_frozenset,
    "TUPLE1": _Machine.op_tuple1,
    "TUPLE2": _Machine.op_tuple2,
    "TUPLE3": _Machine.op_tuple3,
    "DICT": _Machine.op_dict,
    "APPEND": _Machine.op_append,
    "APPENDS": _Machine.op_appends,
    "ADDITEMS": _Machine.op_appends,
    "SETITEM": _Machine.op_setitem,
    "SETITEMS": _Machine.op_setitems,
    "POP": _Machine.op_pop,
    "POP_MARK": _Machine.op_pop_mark,
    "DUP": _Machine.op_dup,
    "GET": _Machine.op_get,
    "BINGET": _Machine.op_get,
    "LONG_BINGET": _Machine.op_get,
    "PUT": _Machine.op_put,
    "BINPUT": _Machine.op_put,
    "LONG_BINPUT": _Machine.op_put,
    "MEMOIZE": _Machine.op_memoize,
    "GLOBAL": _Machine.op_global,
    "STACK_GLOBAL": _Machine.op_stack_global,
    "INST": _Machine.op_inst,
    "OBJ": _Machine.op_obj,
    "NEWOBJ": _Machine.op_newobj,
    "NEWOBJ_EX": _Machine.op_newobj_ex,
    "REDUCE": _Machine.op_reduce,
    "BUILD": _Machine.op_build,
    "PERSID": _Machine.op_persid,
    "BINPERSID": _Machine.op_binpersid,
    "EXT1": _Machine.op_ext,
    "EXT2": _Machine.op_ext,
    "EXT4": _Machine.op_ext,
    "NEXT_BUFFER": _Machine.op_next_buffer,
}
_Machine._handlers = _HANDLERS


def _strings(value: object, depth: int) -> list[str]:
    if isinstance(value, str):
        return [value]
    if depth <= 0:
        return []
    if isinstance(value, Seq):
        return [s for v in value.items for s in _strings(v, depth - 1)]
    if isinstance(value, Dct):
        return [s for _, v in value.pairs for s in _strings(v, depth - 1)]
    return []


def _joblib_layout(state: Dct) -> tuple[int, bool, bool] | None:
    """(payload bytes, dtype has objects, alignment byte present) from a NumpyArrayWrapper state."""
    import numpy as np  # numpy only parses the dtype string; nothing from the file is called

    shape = state.get("shape")
    dtype = state.get("dtype")
    if not isinstance(shape, Seq) or not all(isinstance(x, int) and x >= 0 for x in shape.items) or shape.dropped:
        return None
    if not (isinstance(dtype, Call) and isinstance(dtype.args, Seq) and dtype.args.items):
        return None
    descr = dtype.args.items[0]
    if not isinstance(descr, str) or len(descr) > 64:
        return None
    try:
        dt = np.dtype(descr)
    except (TypeError, ValueError):
        return None
    itemsize = dt.itemsize
    dstate = dtype.state
    if isinstance(dstate, Seq) and len(dstate.items) >= 6 and isinstance(dstate.items[5], int):
        if dstate.items[5] > 0:
            itemsize = dstate.items[5]
        if dstate.items[4] is not None:
            return None  # structured dtype: fields could hold objects; not worth guessing
    count = 1
    for x in shape.items:
        assert isinstance(x, int)  # checked above
        count *= x
    aligned = isinstance(state.get("numpy_array_alignment_bytes"), int)
    return count * itemsize, dt.hasobject, aligned


class LayoutError(Exception):
    """Bytes between pickles (a container's own framing) do not have the expected layout."""


# Called after each pickle with (index, simulated value, reader); consumes the framing bytes that follow
# and returns False when the container has no more pickles. Raises LayoutError on unexpected framing.
Between = Callable[[int, object, CountingReader], bool]


def scan_pickle_stream(
    stream: BinaryIO,
    *,
    location: str,
    limits: ScanLimits,
    max_pickles: int | None = None,
    budget: int | None = None,
    between: Between | None = None,
) -> PickleScan:
    """Walk every pickle in `stream` (one after another, as torch legacy files and pickle.load loops do).

    `max_pickles` stops after that many (torch legacy: 5, then raw storage bytes follow). `between` walks
    containers that interleave pickles with binary framing (torch's legacy tar members). Never raises for
    bad input: breakage and limits are findings; `complete=False` when a limit stopped the walk.
    """
    out = PickleScan()
    r = CountingReader(stream, limits.max_pickle_bytes if budget is None else budget)
    machine = _Machine(out, location, limits)
    try:
        while True:
            value = machine.walk_one(r)
            out.pickles += 1
            if out.pickles == 1:
                out.first_value = value
            if max_pickles is not None and out.pickles >= max_pickles:
                break
            if between is not None:
                if not between(out.pickles - 1, value, r):
                    break
                if out.pickles >= limits.max_pickle_members:
                    raise BudgetExceeded(f"more than {limits.max_pickle_members} pickles in one stream")
                machine = _Machine(out, location, limits)
                continue
            nxt = r.peek1()
            if not nxt:
                break
            if nxt != b"\x80" or out.pickles >= limits.max_pickle_members:
                # pickle.load stops at STOP; what follows is data, recorded for the polyglot-minded
                machine.finding(Severity.LOW, "pickle.trailing-data", "bytes follow the pickle's STOP opcode", r.pos)
                break
            machine = _Machine(out, location, limits)
        if between is not None and r.peek1():
            machine.finding(Severity.LOW, "pickle.trailing-data", "bytes follow the last framed pickle", r.pos)
    except OpcodeError as exc:
        rule = "pickle.truncated" if exc.eof else "pickle.malformed"
        machine.finding(Severity.MEDIUM, rule, f"{exc} (scanned up to here)", exc.pos)
    except LayoutError as exc:
        out.complete = False  # the rest of the stream cannot be located, so it is unscanned
        machine.finding(Severity.MEDIUM, "pickle.layout", f"scan stopped: {exc}", r.pos)
    except BudgetExceeded as exc:
        out.complete = False
        machine.finding(Severity.MEDIUM, "pickle.limit", f"scan stopped: {exc}", r.pos)
    except RecursionError:
        out.complete = False
        machine.finding(Severity.MEDIUM, "pickle.limit", "scan stopped: nesting too deep", r.pos)
    out.bytes_walked = r.pos
    return out
