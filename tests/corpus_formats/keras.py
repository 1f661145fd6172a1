"""Keras `.h5` (Keras 2) and `.keras` (Keras 3) models, built with h5py and zipfile (no TensorFlow)."""

from __future__ import annotations

import base64
import io
import json
import marshal
import zipfile
from collections.abc import Callable

import numpy as np

from proxy.models import Severity
from tests.corpus_formats.common import benign, hostile

# -- Keras -----------------------------------------------------------------------------------------------


def _dense(name: str, units: int, activation: object = "relu", keras3: bool = True) -> dict[str, object]:
    layer: dict[str, object] = {
        "class_name": "Dense",
        "config": {
            "name": name,
            "units": units,
            "activation": activation,
            "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        },
    }
    if keras3:
        layer |= {"module": "keras.layers", "registered_name": None}
        layer["config"]["kernel_initializer"] |= {"module": "keras.initializers", "registered_name": None}  # type: ignore[index]
        layer["config"]["dtype"] = {  # type: ignore[index]
            "module": "keras",
            "class_name": "DTypePolicy",
            "config": {"name": "float32"},
            "registered_name": None,
        }
    return layer


def _lambda_keras2(marker: str) -> dict[str, object]:
    code = compile(f"lambda x: __import__('os').system('touch {marker}') or x", "<lambda>", "eval")
    function = base64.b64encode(marshal.dumps(code.co_consts[0])).decode()
    return {
        "class_name": "Lambda",
        "config": {
            "name": "lambda",
            "function": [function, None, None],
            "function_type": "lambda",
            "output_shape": None,
        },
    }


def _lambda_keras3(marker: str) -> dict[str, object]:
    code = compile(f"lambda x: __import__('os').system('touch {marker}') or x", "<lambda>", "eval")
    function = {
        "class_name": "__lambda__",
        "config": {
            "code": base64.b64encode(marshal.dumps(code.co_consts[0])).decode(),
            "defaults": None,
            "closure": None,
        },
    }
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "registered_name": None,
        "config": {"name": "lambda", "function": function, "arguments": {}},
    }


def _sequential(layers: list[dict[str, object]], keras3: bool = True, name: str = "sequential") -> dict[str, object]:
    model: dict[str, object] = {"class_name": "Sequential", "config": {"name": name, "layers": layers}}
    if keras3:
        model |= {"module": "keras", "registered_name": None}
    return model


def _h5_model(model_config: dict[str, object], extra: Callable[[object], None] | None = None) -> bytes:
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["model_config"] = json.dumps(model_config)
        h5.attrs["training_config"] = json.dumps(
            {"loss": "mse", "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}}}
        )
        weights = h5.create_group("model_weights/dense/dense")
        weights.create_dataset("kernel:0", data=np.zeros((4, 2), dtype=np.float32))
        if extra is not None:
            extra(h5)
    return buffer.getvalue()


def _keras_zip(config: dict[str, object], *, with_config: bool = True) -> bytes:
    import h5py

    weights = io.BytesIO()
    with h5py.File(weights, "w") as h5:
        h5.create_group("layers/dense/vars").create_dataset("0", data=np.zeros((4, 2), dtype=np.float32))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "2024-10-01"}))
        if with_config:
            archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights.getvalue())
    return buffer.getvalue()


def _external_link(h5: object) -> None:
    import h5py

    h5["model_weights/leak"] = h5py.ExternalLink("/etc/passwd", "/")  # type: ignore[index]


def _external_storage(h5: object) -> None:
    h5.create_dataset(  # type: ignore[attr-defined]
        "model_weights/raw",
        shape=(64,),
        dtype="u1",  # type: ignore[attr-defined]
        external=[("/etc/hostname", 0, 64)],
    )


_BENIGN_SEQ = [_dense("dense", 8), _dense("dense_1", 2, "softmax")]
KERAS_CASES = [
    benign(
        "keras-benign-h5",
        "model.h5",
        "keras",
        lambda m: _h5_model(_sequential([_dense("dense", 8, keras3=False)], keras3=False)),
    ),
    benign("keras-benign-zip", "model.keras", "keras", lambda m: _keras_zip(_sequential(_BENIGN_SEQ))),
    benign(
        "keras-benign-functional",
        "model.keras",
        "keras",
        lambda m: _keras_zip(
            {
                "module": "keras.src.models.functional",
                "class_name": "Functional",
                "registered_name": "Functional",
                "config": {"name": "f", "layers": [_sequential(_BENIGN_SEQ, name="inner")]},
            }
        ),
    ),
    hostile(
        "keras-h5-lambda",
        "model.h5",
        "keras",
        "keras.lambda",
        Severity.CRITICAL,
        lambda m: _h5_model(_sequential([_dense("dense", 8, keras3=False), _lambda_keras2(m)], keras3=False)),
    ),
    hostile(
        "keras-zip-lambda",
        "model.keras",
        "keras",
        "keras.lambda",
        Severity.CRITICAL,
        lambda m: _keras_zip(_sequential([_dense("dense", 8), _lambda_keras3(m)])),
    ),
    hostile(
        "keras-nested-lambda",
        "model.keras",
        "keras",
        "keras.lambda",
        Severity.CRITICAL,
        lambda m: _keras_zip(
            {
                "module": "keras.src.models.functional",
                "class_name": "Functional",
                "registered_name": "Functional",
                "config": {
                    "name": "outer",
                    "layers": [_sequential([_sequential([_lambda_keras3(m)], name="deep")], name="mid")],
                },
            }
        ),
    ),
    hostile(
        "keras-os-function",
        "model.keras",
        "keras",
        "keras.dangerous-module",
        Severity.CRITICAL,
        lambda m: _keras_zip(
            _sequential(
                [
                    _dense(
                        "dense",
                        8,
                        activation={
                            "module": "os",
                            "class_name": "function",
                            "config": "system",
                            "registered_name": "function",
                        },
                    )
                ]
            )
        ),
    ),
    hostile(
        "keras-custom-object",
        "model.keras",
        "keras",
        "keras.custom-object",
        Severity.MEDIUM,
        lambda m: _keras_zip(
            _sequential(
                [
                    {
                        "module": "evil_layers",
                        "class_name": "Evil",
                        "registered_name": "Custom>Evil",
                        "config": {"name": "evil"},
                    }
                ]
            )
        ),
    ),
    hostile(
        "keras-h5-external-link",
        "model.h5",
        "keras",
        "keras.h5-external",
        Severity.HIGH,
        lambda m: _h5_model(_sequential([_dense("dense", 8, keras3=False)], keras3=False), _external_link),
    ),
    hostile(
        "keras-h5-external-storage",
        "model.h5",
        "keras",
        "keras.h5-external",
        Severity.HIGH,
        lambda m: _h5_model(_sequential([_dense("dense", 8, keras3=False)], keras3=False), _external_storage),
    ),
    hostile(
        "keras-zip-no-config",
        "model.keras",
        "keras",
        "keras.unreadable",
        Severity.MEDIUM,
        lambda m: _keras_zip({}, with_config=False),
    ),
]
