"""TensorFlow SavedModel/GraphDef and ONNX protobufs, built with the corpus's own wire writer."""

from __future__ import annotations

import base64
import json
import marshal

from proxy.models import Severity
from tests.corpus_formats import writers as w
from tests.corpus_formats.common import benign, hostile

# -- TensorFlow SavedModel -------------------------------------------------------------------------------

_SAVER_NODES = [
    w.tf_node("saver_filename", "Placeholder"),
    w.tf_node("StringJoin", "StringJoin", ["saver_filename"]),
    w.tf_node("ShardedFilename", "ShardedFilename", ["StringJoin"]),
    w.tf_node("SaveV2", "SaveV2", ["ShardedFilename"]),
    w.tf_node("MergeV2Checkpoints", "MergeV2Checkpoints", ["ShardedFilename"]),
    w.tf_node("RestoreV2", "RestoreV2", ["saver_filename"]),
]


def _tf_model(extra_graph: list[bytes] = (), extra_function: list[bytes] = (), **kw: object) -> bytes:  # type: ignore[assignment]
    call = w.tf_function(
        "__inference_call_42",
        [
            w.tf_node("MatMul", "MatMul", ["x", "kernel"]),
            w.tf_node("BiasAdd", "BiasAdd", ["MatMul", "bias"]),
            w.tf_node("Relu", "Relu", ["BiasAdd"]),
            *extra_function,
        ],
    )
    graph = w.tf_graph(
        [
            w.tf_node("x", "Placeholder"),
            w.tf_node("kernel", "VarHandleOp"),
            w.tf_node("kernel/Read", "ReadVariableOp", ["kernel"]),
            w.tf_node("weights", "Const", tensor_content=b"\0" * 65536),
            w.tf_node("call", "StatefulPartitionedCall", ["x", "kernel"]),
            *_SAVER_NODES,
            *extra_graph,
        ],
        [call],
    )
    ops = ["Placeholder", "VarHandleOp", "ReadVariableOp", "Const", "StatefulPartitionedCall", "SaveV2"]
    return w.tf_saved_model(graph, ops)


def _layer_json(class_name: str, marker: str) -> str:
    config: dict[str, object] = {"name": class_name.lower()}
    if class_name == "Lambda":  # Keras 2 SavedModel metadata: marshalled bytecode, base64
        code = compile(f"lambda x: __import__('os').system('touch {marker}') or x", "<lambda>", "eval")
        config |= {"function": [base64.b64encode(marshal.dumps(code.co_consts[0])).decode(), None, None]}
        config |= {"function_type": "lambda"}
    return json.dumps({"class_name": class_name, "name": class_name.lower(), "config": config})


SAVEDMODEL_CASES = [
    benign("tf-benign", "saved_model.pb", "savedmodel", lambda m: _tf_model()),
    benign(
        "tf-benign-keras-objects",
        "saved_model.pb",
        "savedmodel",
        lambda m: w.tf_saved_model(w.tf_graph([w.tf_node("x", "Placeholder")]), [], [_layer_json("Dense", m)]),
    ),
    benign(
        "tf-benign-keras-metadata",
        "keras_metadata.pb",
        "savedmodel",
        lambda m: w.keras_metadata([("root", _layer_json("Sequential", m)), ("root.layer-0", _layer_json("Dense", m))]),
    ),
    hostile(
        "tf-keras-lambda-object-graph",
        "saved_model.pb",
        "savedmodel",
        "keras.lambda",
        Severity.CRITICAL,
        lambda m: w.tf_saved_model(w.tf_graph([w.tf_node("x", "Placeholder")]), [], [_layer_json("Lambda", m)]),
    ),
    hostile(
        "tf-keras-metadata-lambda",
        "keras_metadata.pb",
        "savedmodel",
        "keras.lambda",
        Severity.CRITICAL,
        lambda m: w.keras_metadata(
            [("root", _layer_json("Sequential", m)), ("root.layer-1", _layer_json("Lambda", m))]
        ),
    ),
    benign(
        "tf-benign-frozen-graph",
        "frozen.pb",
        "savedmodel",
        lambda m: w.tf_graph(
            [
                w.tf_node("x", "Placeholder"),
                w.tf_node("w", "Const", tensor_content=b"\1" * 64),
                w.tf_node("y", "MatMul", ["x", "w"]),
            ]
        ),
    ),
    hostile(
        "tf-pyfunc",
        "saved_model.pb",
        "savedmodel",
        "savedmodel.dangerous-op",
        Severity.CRITICAL,
        lambda m: _tf_model(extra_function=[w.tf_node("py", "PyFunc", ["x"])]),
    ),
    hostile(
        "tf-readfile",
        "saved_model.pb",
        "savedmodel",
        "savedmodel.dangerous-op",
        Severity.HIGH,
        lambda m: _tf_model(extra_graph=[w.tf_node("secret", "ReadFile", ["path"])]),
    ),
    hostile(
        "tf-writefile",
        "saved_model.pb",
        "savedmodel",
        "savedmodel.dangerous-op",
        Severity.HIGH,
        lambda m: _tf_model(extra_function=[w.tf_node("drop", "WriteFile", [m])]),
    ),
    hostile(
        "tf-frozen-debug",
        "frozen.pb",
        "savedmodel",
        "savedmodel.dangerous-op",
        Severity.HIGH,
        lambda m: w.tf_graph([w.tf_node("x", "Placeholder"), w.tf_node("d", "DebugIdentity", ["x"])]),
    ),
    hostile(
        "tf-truncated",
        "saved_model.pb",
        "savedmodel",
        "savedmodel.malformed",
        Severity.HIGH,
        lambda m: _tf_model()[:5000],
    ),
]

# -- ONNX ------------------------------------------------------------------------------------------------


def _onnx(nodes: list[bytes] = (), initializers: list[bytes] = (), **kw: object) -> bytes:  # type: ignore[assignment]
    base = [w.onnx_node("Conv", ["x", "W"], ["c"], "conv0"), w.onnx_node("Relu", ["c"], ["y"], "relu0")]
    graph = w.onnx_graph([*base, *nodes], [w.onnx_tensor("W"), *initializers])
    return w.onnx_model(graph, **kw)  # type: ignore[arg-type]


def _onnx_if_branch(tensor: bytes) -> bytes:
    branch = w.onnx_graph(
        [w.onnx_node("Constant", [], ["k"], "const", attrs=[w.onnx_attr_tensor("value", tensor)])], name="then"
    )
    return w.onnx_node("If", ["cond"], ["k"], "if0", attrs=[w.onnx_attr_graph("then_branch", branch)])


ONNX_CASES = [
    benign("onnx-benign", "model.onnx", "onnx", lambda m: _onnx()),
    benign(
        "onnx-benign-external-data",
        "model.onnx",
        "onnx",
        lambda m: _onnx(initializers=[w.onnx_tensor("big", location="model.onnx_data")]),
    ),
    benign(
        "onnx-benign-subdir-data",
        "model.onnx",
        "onnx",
        lambda m: _onnx(initializers=[w.onnx_tensor("big", location="weights/part-0.bin")]),
    ),
    benign(
        "onnx-benign-ms-domain",
        "model.onnx",
        "onnx",
        lambda m: _onnx(
            [w.onnx_node("FusedMatMul", ["y", "W"], ["z"], "fmm", domain="com.microsoft")],
            opsets=[("", 17), ("com.microsoft", 1)],
        ),
    ),
    benign(
        "onnx-benign-local-function",
        "model.onnx",
        "onnx",
        lambda m: _onnx(
            [w.onnx_node("MyGelu", ["y"], ["z"], "gelu", domain="local.fns")],
            opsets=[("", 17), ("local.fns", 1)],
            functions=[w.onnx_function("local.fns", "MyGelu", [w.onnx_node("Erf", ["x"], ["e"], "erf")])],
        ),
    ),
    hostile(
        "onnx-absolute-path",
        "model.onnx",
        "onnx",
        "onnx.external-data-escape",
        Severity.CRITICAL,
        lambda m: _onnx(initializers=[w.onnx_tensor("leak", location="/etc/passwd")]),
    ),
    hostile(
        "onnx-dotdot-path",
        "model.onnx",
        "onnx",
        "onnx.external-data-escape",
        Severity.CRITICAL,
        lambda m: _onnx(initializers=[w.onnx_tensor("leak", location="../../../home/user/.ssh/id_rsa")]),
    ),
    hostile(
        "onnx-windows-path",
        "model.onnx",
        "onnx",
        "onnx.external-data-escape",
        Severity.CRITICAL,
        lambda m: _onnx(initializers=[w.onnx_tensor("leak", location="C:\\Windows\\win.ini")]),
    ),
    hostile(
        "onnx-nested-subgraph-path",
        "model.onnx",
        "onnx",
        "onnx.external-data-escape",
        Severity.CRITICAL,
        lambda m: _onnx([_onnx_if_branch(w.onnx_tensor("k", location="weights/../../../etc/shadow"))]),
    ),
    hostile(
        "onnx-custom-domain",
        "model.onnx",
        "onnx",
        "onnx.custom-domain",
        Severity.MEDIUM,
        lambda m: _onnx(
            [w.onnx_node("RunShell", ["y"], ["z"], "shell", domain="com.attacker")],
            opsets=[("", 17), ("com.attacker", 1)],
        ),
    ),
    hostile("onnx-truncated", "model.onnx", "onnx", "onnx.malformed", Severity.HIGH, lambda m: _onnx()[:-9]),
]
