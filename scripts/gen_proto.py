"""Regenerate tinkex/protocol/tinker_public_pb2.py (and .pyi) from tinker_public.proto.

Usage::

    python scripts/gen_proto.py            # rewrite the committed files
    python scripts/gen_proto.py --out DIR  # write DIR/tinker_public_pb2.py{,i} instead

Runs ``python -m grpc_tools.protoc`` (plus mypy-protobuf's ``--mypy_out`` when the plugin is
installed) and then normalises the output so that it does not depend on the protoc version and
can live in the same process as the official SDK:

* The ``# Protobuf Python Version`` stamp and the ``ValidateProtobufRuntimeVersion`` call are
  removed: they pin the module to the exact protoc release that produced it, which makes
  regeneration non-deterministic across machines and refuses older (still compatible)
  protobuf runtimes.
* The file descriptor is added to a private ``DescriptorPool`` instead of the default pool.
  The official ``tinker`` SDK registers the same full message names (``tinker_public.*``) in
  the default pool, and a pool refuses duplicate symbols, so importing both packages would
  fail. Message full names, and therefore the wire format, are unchanged.

Running the script twice produces byte-identical files; ``tests/protocol/test_proto_drift.py``
fails when the committed files differ from a fresh generation.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_RELATIVE = Path("tinkex/protocol/tinker_public.proto")
PACKAGE_DIR = REPO_ROOT / PROTO_RELATIVE.parent
GENERATED_NAMES = ("tinker_public_pb2.py", "tinker_public_pb2.pyi")

_HEADER_NOTE = (
    "# Post-processed by scripts/gen_proto.py: private descriptor pool, no version pin.\n"
)
_DEFAULT_POOL_CALL = "_descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL_CALL = "POOL.AddSerializedFile("
_PRIVATE_POOL_DEFINITION = (
    "# A private pool: the official tinker SDK registers the same tinker_public.* names in the\n"
    "# default pool, and a pool refuses duplicate symbols.\n"
    "POOL = _descriptor_pool.DescriptorPool()\n\n"
)
_BUILD_TOP_CALL = "_builder.BuildTopDescriptorsAndMessages("
# The pure-Python runtime also records every generated class in the *default* symbol
# database (and so the default pool), which again collides with the official SDK. Under that
# runtime only, the classes are built against a symbol database over the private pool.
_PURE_PYTHON_GUARD = """\
if _descriptor._USE_C_DESCRIPTORS:
  {build}
else:
  _default_sym_db = _builder._sym_db
  _builder._sym_db = _symbol_database.SymbolDatabase(pool=POOL)
  try:
    {build}
  finally:
    _builder._sym_db = _default_sym_db"""


def _mypy_plugin_available() -> bool:
    return shutil.which("protoc-gen-mypy") is not None


def _normalise_python(text: str) -> str:
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    skipping_validation = False
    for line in lines:
        if skipping_validation:
            # The call spans several lines and ends with a lone ")".
            if line.strip() == ")":
                skipping_validation = False
            continue
        if line.startswith("# Protobuf Python Version:"):
            continue
        if line.startswith("# NO CHECKED-IN PROTOBUF GENCODE"):
            continue
        if line.startswith("from google.protobuf import runtime_version"):
            continue
        if line.startswith("_runtime_version.ValidateProtobufRuntimeVersion("):
            skipping_validation = not line.rstrip().endswith(")")
            continue
        out.append(line)
    result = "".join(out)
    if _DEFAULT_POOL_CALL not in result:
        raise RuntimeError(
            "gen_proto: protoc output no longer registers its descriptor with "
            f"{_DEFAULT_POOL_CALL!r}; update scripts/gen_proto.py"
        )
    result = result.replace(
        f"DESCRIPTOR = {_DEFAULT_POOL_CALL}",
        f"{_PRIVATE_POOL_DEFINITION}DESCRIPTOR = {_PRIVATE_POOL_CALL}",
    )
    build_lines = [line for line in result.splitlines() if line.startswith(_BUILD_TOP_CALL)]
    if len(build_lines) != 1:
        raise RuntimeError(
            f"gen_proto: expected one {_BUILD_TOP_CALL!r} line in protoc output; "
            "update scripts/gen_proto.py"
        )
    build_line = build_lines[0]
    result = result.replace(build_line, _PURE_PYTHON_GUARD.format(build=build_line.strip()))
    return _HEADER_NOTE + result


def _normalise_stub(text: str) -> str:
    # mypy-protobuf writes no version stamp today; drop one if a future release adds it.
    lines = [line for line in text.splitlines(keepends=True) if "mypy-protobuf version" not in line]
    result = "".join(lines)
    marker = "DESCRIPTOR: _descriptor.FileDescriptor\n"
    if marker in result and "POOL:" not in result:
        result = result.replace(
            marker,
            marker + "POOL: _descriptor_pool.DescriptorPool\n",
            1,
        )
        result = result.replace(
            "from google.protobuf import descriptor as _descriptor\n",
            "from google.protobuf import descriptor as _descriptor\n"
            "from google.protobuf import descriptor_pool as _descriptor_pool\n",
            1,
        )
    return result


def generate(out_dir: Path) -> list[Path]:
    """Write the normalised generated files into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tinkex-gen-proto-") as tmp:
        tmp_root = Path(tmp)
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO_ROOT}",
            f"--python_out={tmp_root}",
        ]
        want_stub = _mypy_plugin_available()
        if want_stub:
            command.append(f"--mypy_out={tmp_root}")
        command.append(str(REPO_ROOT / PROTO_RELATIVE))
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(
                f"gen_proto: protoc failed ({completed.returncode}):\n{completed.stderr}"
            )
        produced = tmp_root / PROTO_RELATIVE.parent
        written: list[Path] = []
        for name in GENERATED_NAMES:
            source = produced / name
            if not source.exists():
                if name.endswith(".pyi") and not want_stub:
                    continue
                raise RuntimeError(f"gen_proto: protoc did not produce {name}")
            text = source.read_text(encoding="utf-8")
            text = _normalise_python(text) if name.endswith(".py") else _normalise_stub(text)
            target = out_dir / name
            target.write_text(text, encoding="utf-8", newline="\n")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out",
        type=Path,
        default=PACKAGE_DIR,
        help="directory to write into (default: tinkex/protocol)",
    )
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
