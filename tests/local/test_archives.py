"""Archive URLs of the local server: a token grants one checkpoint of one tenant, briefly.

The HTTP round trip (redirect, download without an API key, a forged token refused, a
deleted checkpoint gone) is in tests/client/test_rest.py; here are the corners a real
server cannot reach in a test's time: expiry, a restart, a token edited to name another
checkpoint or tenant, and the exact length of a streamed tar.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest

from tinkex.local import archives
from tinkex.local.archives import ARCHIVE_URL_SECONDS, ArchiveSigner, TarStream
from tinkex.local.errors import ServerError


def _refused(signer: ArchiveSigner, token: str) -> ServerError:
    with pytest.raises(ServerError) as refused:
        signer.check(token)
    assert refused.value.status == 403
    return refused.value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_grants_exactly_what_it_was_issued_for() -> None:
    signer = ArchiveSigner()
    token, ticket = signer.issue("user-a", "run-1", "weights/step-2")
    assert signer.check(token) == ticket
    assert (ticket.owner, ticket.run_id, ticket.checkpoint_id) == (
        "user-a",
        "run-1",
        "weights/step-2",
    )


@pytest.mark.parametrize(
    "edit",
    [
        ["user-b", "run-1", "weights/step-2"],  # another tenant
        ["user-a", "run-2", "weights/step-2"],  # another run
        ["user-a", "run-1", "weights/step-3"],  # another checkpoint
    ],
    ids=["owner", "run", "checkpoint"],
)
def test_a_token_edited_to_name_something_else_is_refused(edit: list[str]) -> None:
    signer = ArchiveSigner()
    token, ticket = signer.issue("user-a", "run-1", "weights/step-2")
    _, _, signature = token.partition(".")
    payload = json.dumps([*edit, ticket.expires], separators=(",", ":")).encode()
    error = _refused(signer, f"{_b64(payload)}.{signature}")
    assert "not valid" in error.message and "get_checkpoint_archive_url" in error.message


def test_a_token_cannot_be_extended() -> None:
    signer = ArchiveSigner()
    token, ticket = signer.issue("user-a", "run-1", "weights/step-2")
    _, _, signature = token.partition(".")
    payload = json.dumps(
        ["user-a", "run-1", "weights/step-2", ticket.expires + 3600], separators=(",", ":")
    ).encode()
    assert "not valid" in _refused(signer, f"{_b64(payload)}.{signature}").message


def test_a_token_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = ArchiveSigner()
    token, ticket = signer.issue("user-a", "run-1", "weights/step-2")
    assert ticket.expires - ARCHIVE_URL_SECONDS <= archives.time.time()
    monkeypatch.setattr(archives.time, "time", lambda: ticket.expires - 1.0)
    assert signer.check(token) == ticket  # still valid just before
    monkeypatch.setattr(archives.time, "time", lambda: ticket.expires + 1.0)
    error = _refused(signer, token)
    assert "expired" in error.message and "get_checkpoint_archive_url" in error.message


def test_a_restarted_server_refuses_the_tokens_of_the_last_one() -> None:
    token, _ = ArchiveSigner().issue("user-a", "run-1", "weights/step-2")
    assert "not valid" in _refused(ArchiveSigner(), token).message


@pytest.mark.parametrize("token", ["", "abc", "a.b", ".", "!!!.???", "é.é", "x" * 5000])
def test_garbage_is_a_403_not_a_crash(token: str) -> None:
    assert "not valid" in _refused(ArchiveSigner(), token).message


def test_a_tar_stream_is_a_valid_tar_of_exactly_its_declared_length(tmp_path: Path) -> None:
    files = {
        "adapter.safetensors": b"a" * 1000,
        "empty.bin": b"",
        "exact.bin": b"b" * tarfile.BLOCKSIZE,
        "nested/deeper/optimizer.safetensors": bytes(range(256)) * 9,
        "n" * 150 + ".json": b"{}",  # longer than a ustar name: a PAX header
    }
    for name, data in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    stream = TarStream(tmp_path)
    body = b"".join(stream.chunks())
    assert len(body) == stream.length
    read: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tar:
        for member in tar:
            source = tar.extractfile(member)
            assert source is not None, f"{member.name} is not a regular file"
            read[member.name] = source.read()
    assert read == files


def test_a_file_that_shrinks_while_streaming_breaks_the_stream(tmp_path: Path) -> None:
    """The length was promised up front: a short body must fail, not be padded silently."""
    (tmp_path / "adapter.safetensors").write_bytes(b"x" * 5000)
    stream = TarStream(tmp_path)
    (tmp_path / "adapter.safetensors").write_bytes(b"x" * 10)
    with pytest.raises(OSError, match="shrank while being archived"):
        b"".join(stream.chunks())
