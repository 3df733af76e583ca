"""tinker_public.proto: the schema of §3.12, wire-identical to the official SDK's, and importable
in the same process as the official SDK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor as _descriptor

from tinkex.protocol import tinker_public_pb2 as ours

REPO = Path(__file__).resolve().parents[2]


def official_pb2() -> Any:
    pytest.importorskip("tinker")
    from tinker.proto import tinker_public_pb2

    return tinker_public_pb2


def field_shape(field: _descriptor.FieldDescriptor) -> tuple[object, ...]:
    oneof = field.containing_oneof
    real_oneof = oneof.name if oneof is not None and not oneof.name.startswith("_") else None
    return (
        field.number,
        field.type,
        field.is_repeated,
        field.message_type.full_name if field.message_type else None,
        field.enum_type.full_name if field.enum_type else None,
        real_oneof,
        field.has_presence,
    )


def message_shape(message: _descriptor.Descriptor) -> dict[str, object]:
    shape: dict[str, object] = {f.name: field_shape(f) for f in message.fields}
    for nested in message.nested_types:
        shape[f"<{nested.name}>"] = message_shape(nested)
    return shape


def file_shape(file: _descriptor.FileDescriptor) -> dict[str, object]:
    shape: dict[str, object] = {
        name: message_shape(message) for name, message in file.message_types_by_name.items()
    }
    for name, enum in file.enum_types_by_name.items():
        shape[f"enum {name}"] = {v.name: v.number for v in enum.values}
    return shape


def test_package_and_registered_file_name() -> None:
    assert ours.DESCRIPTOR.package == "tinker_public"
    assert ours.DESCRIPTOR.name == "tinkex/protocol/tinker_public.proto"
    assert (
        ours.ForwardBackwardRequest.DESCRIPTOR.full_name == "tinker_public.ForwardBackwardRequest"
    )


def test_schema_has_the_0_38_fields() -> None:
    assert {f.name for f in ours.SampleResponse.DESCRIPTOR.fields} >= {
        "target_prompt_logprobs",
        "prompt_alt_tokens",
    }
    assert "loss_fn_config_v2" in ours.ForwardBackwardRequest.DESCRIPTOR.fields_by_name
    assert "topk_sampled_logprobs" in ours.SampledSequence.DESCRIPTOR.fields_by_name
    assert "override_dimensions" in ours.ImageChunk.DESCRIPTOR.fields_by_name
    assert {f.name for f in ours.Datum.DESCRIPTOR.fields} >= {
        "model_input_spans",
        "loss_fn_input_spans",
    }


def test_schema_matches_the_official_sdk_field_for_field() -> None:
    official = official_pb2()
    assert file_shape(ours.DESCRIPTOR) == file_shape(official.DESCRIPTOR)


def test_official_and_tinkex_messages_live_side_by_side() -> None:
    official = official_pb2()
    msg = ours.Tensor(dense=b"\x01" * 8, dtype=ours.DTYPE_INT64, shape=[1])
    parsed = official.Tensor.FromString(msg.SerializeToString())
    assert (parsed.dense, parsed.dtype, list(parsed.shape)) == (
        b"\x01" * 8,
        official.DTYPE_INT64,
        [1],
    )
    assert ours.Tensor.FromString(parsed.SerializeToString()) == msg
    assert ours.DESCRIPTOR.pool is not official.DESCRIPTOR.pool


# The official module is loaded straight from its file: it registers "tinker_public.proto" in the
# default pool exactly as `import tinker` does, without the seconds `import tinker` costs.
COEXIST = """
import importlib, importlib.util, sys
from pathlib import Path

def official():
    package = Path(importlib.util.find_spec("tinker").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location(
        "official_tinker_public_pb2", package / "proto" / "tinker_public_pb2.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def tinkex():
    return importlib.import_module("tinkex.protocol.tinker_public_pb2")

loaded = {name: globals()[name]() for name in sys.argv[1:]}
theirs, ours = loaded["official"], loaded["tinkex"]
msg = ours.ForwardBackwardRequest(model_id="m", seq_id=3)
msg.loss_fn_config_v2["k"].text = "v"
wire = theirs.ForwardBackwardRequest.FromString(msg.SerializeToString()).SerializeToString()
assert ours.ForwardBackwardRequest.FromString(wire) == msg

from google.protobuf.internal import api_implementation
print(api_implementation.Type())
"""


def test_importing_both_in_one_process_in_either_order_and_runtime() -> None:
    pytest.importorskip("tinker")
    runs = {
        (implementation, order): subprocess.Popen(
            [sys.executable, "-c", COEXIST, *order],
            cwd=REPO,
            env={"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": implementation, "PATH": ""},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for implementation in ("upb", "python")
        for order in (("official", "tinkex"), ("tinkex", "official"))
    }
    for (implementation, order), process in runs.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{implementation} {order}: {err}"
        assert out.strip() == implementation
