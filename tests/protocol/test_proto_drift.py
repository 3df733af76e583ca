"""The committed generated protobuf module must match a fresh run of scripts/gen_proto.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "tinkex" / "protocol"
FIX = "run `python scripts/gen_proto.py` and commit the result"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", REPO / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    pytest.importorskip("grpc_tools")
    out = tmp_path_factory.mktemp("gen_proto")
    paths = load_generator().generate(out)
    return {path.name: path.read_bytes() for path in paths}


def test_generated_module_is_up_to_date(generated: dict[str, bytes]) -> None:
    assert "tinker_public_pb2.py" in generated
    for name, fresh in generated.items():
        committed = PACKAGE / name
        assert committed.exists(), f"{committed} is missing; {FIX}"
        assert committed.read_bytes() == fresh, (
            f"{committed.relative_to(REPO)} differs from tinker_public.proto; {FIX}"
        )


def test_generation_is_deterministic(generated: dict[str, bytes], tmp_path: Path) -> None:
    again = load_generator().generate(tmp_path)
    assert {path.name: path.read_bytes() for path in again} == generated


def test_generated_module_has_no_version_pin(generated: dict[str, bytes]) -> None:
    text = generated["tinker_public_pb2.py"].decode()
    assert "Protobuf Python Version" not in text
    assert "ValidateProtobufRuntimeVersion" not in text
    assert "_descriptor_pool.Default()" not in text
