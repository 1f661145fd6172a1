"""Tiny writers for the binary formats the corpus needs: protobuf wire format, TF graphs, ONNX, GGUF, raw
safetensors. Written from the format specs so tests need neither TensorFlow, onnx nor the gguf package.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from typing import Any

# -- protobuf wire format -------------------------------------------------------------------------------


def pb_varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_int(number: int, value: int) -> bytes:
    return pb_varint(number << 3) + pb_varint(value)


def pb_bytes(number: int, payload: bytes) -> bytes:
    return pb_varint(number << 3 | 2) + pb_varint(len(payload)) + payload


def pb_str(number: int, text: str) -> bytes:
    return pb_bytes(number, text.encode())


# -- TensorFlow GraphDef / SavedModel -------------------------------------------------------------------


def tf_node(name: str, op: str, inputs: Sequence[str] = (), tensor_content: bytes = b"") -> bytes:
    node = pb_str(1, name) + pb_str(2, op) + b"".join(pb_str(3, i) for i in inputs)
    attr_value = pb_int(6, 1)  # AttrValue.type = DT_FLOAT
    node += pb_bytes(5, pb_str(1, "dtype") + pb_bytes(2, attr_value))
    if tensor_content:  # AttrValue.tensor (8) -> TensorProto.tensor_content (4)
        node += pb_bytes(5, pb_str(1, "value") + pb_bytes(2, pb_bytes(8, pb_int(1, 1) + pb_bytes(4, tensor_content))))
    return node


def tf_function(name: str, nodes: Iterable[bytes]) -> bytes:
    return pb_bytes(1, pb_str(1, name)) + b"".join(pb_bytes(3, n) for n in nodes)


def tf_graph(nodes: Iterable[bytes], functions: Iterable[bytes] = ()) -> bytes:
    body = b"".join(pb_bytes(1, n) for n in nodes)
    library = b"".join(pb_bytes(1, f) for f in functions)
    if library:
        body += pb_bytes(2, library)
    return body + pb_bytes(4, pb_int(1, 1087))  # VersionDef.producer


def tf_saved_model(graph: bytes, stripped_ops: Iterable[str] = (), user_objects: Iterable[str] = ()) -> bytes:
    """A SavedModel; `user_objects` are Keras metadata JSON strings stored in the object graph."""
    op_list = b"".join(pb_bytes(1, pb_str(1, op)) for op in stripped_ops)
    meta_info = pb_str(2, "serve") + pb_bytes(4, op_list)  # tags, stripped_op_list
    signature = pb_str(1, "serving_default") + pb_bytes(2, pb_str(3, "tensorflow/serving/predict"))
    meta_graph = pb_bytes(1, meta_info) + pb_bytes(2, graph) + pb_bytes(5, signature)
    objects = b"".join(
        pb_bytes(1, pb_bytes(4, pb_str(1, "_tf_keras_layer") + pb_str(3, metadata))) for metadata in user_objects
    )
    if objects:
        meta_graph += pb_bytes(7, objects)
    return pb_int(1, 1) + pb_bytes(2, meta_graph)


def keras_metadata(layers: Iterable[tuple[str, str]]) -> bytes:
    """`keras_metadata.pb`: SavedMetadata of SavedObjects (node_id, node_path, identifier, metadata JSON)."""
    nodes = b"".join(
        pb_bytes(1, pb_int(2, i) + pb_str(3, path) + pb_str(4, "_tf_keras_layer") + pb_str(5, metadata))
        for i, (path, metadata) in enumerate(layers)
    )
    return nodes


# -- ONNX ------------------------------------------------------------------------------------------------


def onnx_tensor(name: str, dims: Sequence[int] = (2, 2), location: str | None = None) -> bytes:
    out = b"".join(pb_int(1, d) for d in dims) + pb_int(2, 1) + pb_str(8, name)
    if location is None:
        count = 1
        for d in dims:
            count *= d
        return out + pb_bytes(9, b"\0" * 4 * count)
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        out += pb_bytes(13, pb_str(1, key) + pb_str(2, value))
    return out + pb_int(14, 1)


def onnx_node(
    op: str, inputs: Sequence[str], outputs: Sequence[str], name: str, domain: str = "", attrs: Sequence[bytes] = ()
) -> bytes:
    out = b"".join(pb_str(1, i) for i in inputs) + b"".join(pb_str(2, o) for o in outputs)
    out += pb_str(3, name) + pb_str(4, op) + b"".join(pb_bytes(5, a) for a in attrs)
    return out + (pb_str(7, domain) if domain else b"")


def onnx_attr_graph(name: str, graph: bytes) -> bytes:
    return pb_str(1, name) + pb_bytes(6, graph) + pb_int(20, 5)  # AttributeType.GRAPH


def onnx_attr_tensor(name: str, tensor: bytes) -> bytes:
    return pb_str(1, name) + pb_bytes(5, tensor) + pb_int(20, 4)  # AttributeType.TENSOR


def onnx_graph(nodes: Iterable[bytes], initializers: Iterable[bytes] = (), name: str = "main") -> bytes:
    body = b"".join(pb_bytes(1, n) for n in nodes) + pb_str(2, name)
    body += b"".join(pb_bytes(5, t) for t in initializers)
    value_info = pb_str(1, "x")
    return body + pb_bytes(11, value_info) + pb_bytes(12, pb_str(1, "y"))


def onnx_function(domain: str, name: str, nodes: Iterable[bytes]) -> bytes:
    return pb_str(1, name) + b"".join(pb_bytes(7, n) for n in nodes) + pb_str(10, domain)


def onnx_model(graph: bytes, opsets: Sequence[tuple[str, int]] = (("", 17),), functions: Iterable[bytes] = ()) -> bytes:
    out = pb_int(1, 8) + pb_str(2, "pytorch") + pb_str(3, "2.4")
    out += b"".join(pb_bytes(8, pb_str(1, d) + pb_int(2, v)) for d, v in opsets)
    out += pb_bytes(7, graph)
    return out + b"".join(pb_bytes(25, f) for f in functions)


# -- GGUF ------------------------------------------------------------------------------------------------

GGUF_U32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_U64 = 4, 6, 7, 8, 9, 10
_GGUF_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def _gguf_value(kind: int, value: Any, e: str, wide: bool) -> bytes:
    count = "Q" if wide else "I"
    if kind in _GGUF_FIXED:
        return struct.pack(e + _GGUF_FIXED[kind], value)
    if kind == GGUF_STRING:
        raw = value.encode() if isinstance(value, str) else value
        return struct.pack(e + count, len(raw)) + raw
    if kind == GGUF_ARRAY:
        element_kind, items = value
        out = struct.pack(e + "I", element_kind) + struct.pack(e + count, len(items))
        return out + b"".join(_gguf_value(element_kind, item, e, wide) for item in items)
    raise ValueError(kind)


def gguf_bytes(
    kvs: Sequence[tuple[str, int, Any]],
    tensors: Sequence[tuple[str, Sequence[int], int, bytes]] = (),
    *,
    version: int = 3,
    endian: str = "<",
    alignment: int = 32,
    offsets: Sequence[int] | None = None,
) -> bytes:
    """A GGUF file; tensors are (name, dims, ggml type, data); `offsets` overrides the computed ones."""
    wide = version >= 2
    count = "Q" if wide else "I"
    out = b"GGUF" + struct.pack(endian + "I", version)
    out += struct.pack(endian + count, len(tensors)) + struct.pack(endian + count, len(kvs))
    for key, kind, value in kvs:
        out += _gguf_value(GGUF_STRING, key, endian, wide) + struct.pack(endian + "I", kind)
        out += _gguf_value(kind, value, endian, wide)
    data = b""
    computed = []
    for _, _, _, blob in tensors:
        computed.append(len(data))
        data += blob + b"\0" * (-len(blob) % alignment)
    for index, (name, dims, ggml_type, _) in enumerate(tensors):
        out += _gguf_value(GGUF_STRING, name, endian, wide) + struct.pack(endian + "I", len(dims))
        out += b"".join(struct.pack(endian + "Q", d) for d in dims)
        offset = offsets[index] if offsets is not None else computed[index]
        out += struct.pack(endian + "I", ggml_type) + struct.pack(endian + "Q", offset)
    out += b"\0" * (-len(out) % alignment)
    return out + data


# -- safetensors (hand-made headers) --------------------------------------------------------------------


def safetensors_raw(header: dict[str, Any] | str | bytes, data: bytes, header_len: int | None = None) -> bytes:
    """A safetensors file with exactly this header (no validation), optionally lying about its length."""
    if isinstance(header, dict):
        raw = json.dumps(header).encode()
    else:
        raw = header.encode() if isinstance(header, str) else header
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data
