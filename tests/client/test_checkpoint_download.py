"""RestClient.download_checkpoint: real archives from ``tinkex serve``, hostile ones from a stub.

The local server only produces honest archives, so the hostile ones (path traversal, links
out of the target, devices, truncation, refusals) are served by an ``httpx.MockTransport``
playing a storage host behind the archive redirect.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import tarfile
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tinkex
from tests.client.conftest import BASE_MODEL
from tests.conftest import API_KEY
from tinkex import telemetry
from tinkex.actors.io_loop import LoopContext
from tinkex.actors.runtime import Runtime
from tinkex.clients import checkpoint_download
from tinkex.clients.checkpoint_download import (
    DOWNLOAD_EVENT,
    MIN_EXTRACTED_LIMIT,
    UnsafeArchiveError,
    extract_safely,
)
from tinkex.config import Config

STUB_PATH = "tinker://run-1/weights/final"
STUB_TARGET = "run-1_weights_final"


@pytest.fixture(scope="module")
def saved(base_url: str, local_server: Any) -> Iterator[tuple[tinkex.RestClient, str, Path]]:
    """A rest client, a checkpoint's tinker path, and the server's directory of its files."""
    with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as service:
        training = service.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
        path = training.save_state("download-me").result(timeout=60).path
        stored = local_server.service.store.find_checkpoint(
            training.model_id, "weights/download-me"
        )
        yield service.create_rest_client(), path, stored.directory


def _target(path: str) -> str:
    return path.removeprefix("tinker://").replace("/", "_")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# the honest server ------------------------------------------------------------------------


def test_download_fetches_exactly_the_checkpoint_files(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, path, stored = saved
    calls: list[tuple[int, int | None]] = []
    target = rest.download_checkpoint(
        path, tmp_path / "out", progress=lambda done, total: calls.append((done, total))
    ).result(timeout=60)

    assert target == tmp_path / "out" / _target(path)
    assert _leftovers(tmp_path / "out") == [target.name]  # no staging directory left
    expected = {p.name: p.read_bytes() for p in stored.iterdir()}
    assert {p.name: p.read_bytes() for p in target.iterdir()} == expected

    dones = [done for done, _ in calls]
    totals = {total for _, total in calls}
    assert dones == sorted(dones) and len(totals) == 1
    (total,) = totals
    assert total is not None and dones[-1] == total > sum(len(b) for b in expected.values())


def test_existing_target_needs_force(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, path, stored = saved
    target = tmp_path / _target(path)
    target.mkdir()
    rest.download_checkpoint(path, tmp_path).result(timeout=60)  # empty: fine
    (target / "mine.txt").write_text("keep me")

    with pytest.raises(FileExistsError) as refused:
        rest.download_checkpoint(path, tmp_path)
    assert str(target) in str(refused.value) and "force=True" in str(refused.value)
    assert (target / "mine.txt").read_text() == "keep me"

    rest.download_checkpoint(path, tmp_path, force=True).result(timeout=60)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in stored.iterdir())
    assert _leftovers(tmp_path) == [target.name]


def test_target_filled_during_the_download_is_not_overwritten(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, path, _ = saved
    target = tmp_path / _target(path)

    def somebody_else_writes(done: int, total: int | None) -> None:
        target.mkdir(exist_ok=True)
        (target / "theirs.txt").write_text("theirs")

    download = rest.download_checkpoint(path, tmp_path, progress=somebody_else_writes)
    with pytest.raises(FileExistsError, match="force=True"):
        download.result(timeout=60)
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert _leftovers(tmp_path) == [target.name]


def test_a_failing_progress_callback_aborts_and_leaves_nothing(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, path, _ = saved

    def interrupt(done: int, total: int | None) -> None:
        raise KeyError("user pressed stop")

    with pytest.raises(KeyError, match="user pressed stop"):
        rest.download_checkpoint(path, tmp_path / "out", progress=interrupt).result(timeout=60)
    assert _leftovers(tmp_path / "out") == []


async def test_async_twin(saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path) -> None:
    rest, path, stored = saved
    target = await rest.download_checkpoint_async(path, tmp_path)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in stored.iterdir())


def test_bad_path_fails_before_anything_happens(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, _, _ = saved
    with pytest.raises(ValueError, match="must start with 'tinker://'"):
        rest.download_checkpoint("weights/download-me", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# a stub storage host ----------------------------------------------------------------------


def _stub_client(serve_archive: Callable[[], httpx.Response]) -> tinkex.RestClient:
    """A RestClient whose API redirects the archive to a stub storage host."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.test":
            assert (
                request.url.path == "/api/v1/training_runs/run-1/checkpoints/weights/final/archive"
            )
            return httpx.Response(302, headers={"Location": "http://files.test/a.tar?sig=s3cr3t"})
        assert "x-api-key" not in request.headers  # a signed URL never gets the API key
        return serve_archive()

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    config = Config(api_key="tml-stub-key", base_url="http://api.test", http_client=client)
    return tinkex.RestClient(config=config)


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


HOSTILE = {
    "absolute": ((_member("/tmp/tinkex-escape.txt"), b"x"), "absolute or drive path"),
    "dotdot": ((_member("../escape.txt"), b"x"), "contains '..'"),
    "nested dotdot": ((_member("ok/../../escape.txt"), b"x"), "contains '..'"),
    "symlink absolute": ((_member("etc", tarfile.SYMTYPE, "/etc"), b""), "could lead outside"),
    "symlink up": ((_member("up", tarfile.SYMTYPE, "../.."), b""), "could lead outside"),
    "hardlink up": ((_member("h", tarfile.LNKTYPE, "../escape.txt"), b""), "contains '..'"),
    "hardlink absolute": ((_member("h", tarfile.LNKTYPE, "/etc/passwd"), b""), "absolute"),
    "fifo": ((_member("pipe", tarfile.FIFOTYPE), b""), "device or FIFO"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_leave_nothing(case: str, tmp_path: Path) -> None:
    member, message = HOSTILE[case]
    body = _tar((_member("adapter.safetensors"), b"fine"), member)
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    out = tmp_path / "sandbox" / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        rest.download_checkpoint(STUB_PATH, out).result(timeout=30)
    assert _leftovers(tmp_path) == []  # not even the output directories the call made
    assert not Path("/tmp/tinkex-escape.txt").exists()


def test_links_that_stay_inside_are_kept(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(
        _tar(
            (_member("sub/data.bin"), b"payload"),
            (_member("latest", tarfile.SYMTYPE, "sub/data.bin"), b""),
            (_member("copy.bin", tarfile.LNKTYPE, "sub/data.bin"), b""),
        )
    )
    extract_safely(archive, tmp_path / "x")
    assert (tmp_path / "x" / "latest").is_symlink()
    assert (tmp_path / "x" / "latest").read_bytes() == b"payload"
    assert (tmp_path / "x" / "copy.bin").read_bytes() == b"payload"
    assert not (tmp_path / "x" / "copy.bin").is_symlink()


def test_truncated_archive_leaves_nothing(tmp_path: Path) -> None:
    body = _tar((_member("adapter.safetensors"), b"y" * 5000))

    async def short() -> AsyncIterator[bytes]:
        yield body[:1000]

    rest = _stub_client(
        lambda: httpx.Response(200, headers={"content-length": str(len(body))}, content=short())
    )
    with pytest.raises(tinkex.APIConnectionError, match=f"ended after 1000 of {len(body)} bytes"):
        rest.download_checkpoint(STUB_PATH, tmp_path).result(timeout=30)
    assert _leftovers(tmp_path) == []


def test_refused_archive_url_is_a_status_error_without_secrets(tmp_path: Path) -> None:
    rest = _stub_client(lambda: httpx.Response(403, json={"detail": "signature expired"}))
    with pytest.raises(tinkex.PermissionDeniedError, match="signature expired") as refused:
        rest.download_checkpoint(STUB_PATH, tmp_path).result(timeout=30)
    assert "s3cr3t" not in str(refused.value)
    assert _leftovers(tmp_path) == []


def test_download_streams_in_constant_memory(tmp_path: Path) -> None:
    size, chunk = 32 * 1024 * 1024, b"\0" * (1024 * 1024)
    header = tarfile.TarInfo("big.bin")
    header.size = size
    head = header.tobuf()
    tail = b"\0" * (-size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(size // len(chunk)):
            yield chunk
        yield tail

    length = str(len(head) + size + len(tail))
    rest = _stub_client(
        lambda: httpx.Response(200, headers={"content-length": length}, content=body())
    )
    tracemalloc.start()
    try:
        target = rest.download_checkpoint(STUB_PATH, tmp_path).result(timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (target / "big.bin").stat().st_size == size
    assert peak < size / 4, f"peak {peak} bytes while downloading {size}"
    assert _leftovers(tmp_path) == [STUB_TARGET]


def test_cancelling_while_unpacking_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive has arrived and the worker thread is unpacking it when the caller
    cancels: the thread finishes its work but must not rename anything into place."""
    unpacking, go, cancelled, finished = (threading.Event() for _ in range(4))
    real_extract, real_unpack = extract_safely, checkpoint_download._unpack_and_install

    def held_extract(archive: Path, destination: Path, **limits: Any) -> None:
        unpacking.set()
        assert go.wait(timeout=30), "the test never let the unpacking go on"
        real_extract(archive, destination, **limits)

    def observed_unpack(*args: Any) -> None:
        try:
            real_unpack(*args)
        finally:
            finished.set()

    monkeypatch.setattr(checkpoint_download, "extract_safely", held_extract)
    monkeypatch.setattr(checkpoint_download, "_unpack_and_install", observed_unpack)
    body = _tar((_member("adapter.safetensors"), b"weights"))
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    handler = f"test-cancel-unpack-{id(cancelled)}"
    telemetry.attach(handler, f"{DOWNLOAD_EVENT}.exception", lambda *_: cancelled.set())
    try:
        download = rest.download_checkpoint(STUB_PATH, tmp_path)
        assert unpacking.wait(timeout=30)
        assert download.cancel()
        assert cancelled.wait(timeout=30)  # the caller has given up (and said so)
    finally:
        go.set()
        telemetry.detach(handler)
    assert finished.wait(timeout=30)
    assert _leftovers(tmp_path) == []  # no target, no staging directory


# archives as tools make them ----------------------------------------------------------------


def _checkpoint_dir(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "adapter.safetensors").write_bytes(b"weights")
    (root / "sub" / "checkpoint.json").write_text("{}")
    return root


def _tar_of_dot(directory: Path, tool: str, archive: Path) -> None:
    """``tar -C directory -cf archive .``: members ``./`` (or ``.``), ``./adapter...``."""
    if tool == "tarfile":
        with tarfile.open(archive, "w") as tar:
            tar.add(directory, arcname=".")
        return
    if shutil.which("tar") is None:
        pytest.skip("no tar command on this machine")
    subprocess.run(["tar", "-C", str(directory), "-cf", str(archive), "."], check=True)


@pytest.mark.parametrize("tool", ["tarfile", "tar"])
def test_an_archive_of_dot_unpacks_into_the_target(tool: str, tmp_path: Path) -> None:
    archive = tmp_path / "dot.tar"
    _tar_of_dot(_checkpoint_dir(tmp_path / "src"), tool, archive)
    with tarfile.open(archive) as tar:
        assert tar.getnames()[0] in (".", "./")  # the case that used to crash
    body = archive.read_bytes()
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    target = rest.download_checkpoint(STUB_PATH, tmp_path / "out").result(timeout=30)
    assert (target / "adapter.safetensors").read_bytes() == b"weights"
    assert (target / "sub" / "checkpoint.json").read_text() == "{}"


def test_a_dot_member_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar((_member("./"), b"x")))
    with pytest.raises(UnsafeArchiveError, match="is not a directory but has no name"):
        extract_safely(archive, tmp_path / "x")


# the output directory ---------------------------------------------------------------------


def test_a_failed_download_removes_only_the_directories_it_created(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    body = _tar((_member("../escape.txt"), b"x"))
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    with pytest.raises(UnsafeArchiveError):
        rest.download_checkpoint(STUB_PATH, kept / "made" / "deeper").result(timeout=30)
    assert _leftovers(tmp_path) == ["kept"] and _leftovers(kept) == []


def test_cancelling_mid_download_leaves_nothing_but_what_was_there(tmp_path: Path) -> None:
    # Neither the staging directory nor the directories the call made for the target stay.
    kept = tmp_path / "kept"
    kept.mkdir()
    started, ended = threading.Event(), threading.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"\0" * tarfile.BLOCKSIZE
        await asyncio.Event().wait()  # the rest never comes
        yield b""  # pragma: no cover

    rest = _stub_client(lambda: httpx.Response(200, content=stalls()))
    out = kept / "made" / "deeper"
    download = rest.download_checkpoint(STUB_PATH, out, progress=lambda *_: started.set())
    handler = f"test-cancel-dirs-{id(ended)}"
    telemetry.attach(handler, f"{DOWNLOAD_EVENT}.exception", lambda *_: ended.set())
    try:
        assert started.wait(timeout=30)
        assert out.is_dir()  # the call made it ...
        assert download.cancel()
        assert ended.wait(timeout=30)  # emitted after the staging directory was removed
    finally:
        telemetry.detach(handler)
    assert _leftovers(tmp_path) == ["kept"] and _leftovers(kept) == []  # ... and removed it


# archive bombs ----------------------------------------------------------------------------


def test_hard_links_are_links_not_copies(tmp_path: Path) -> None:
    """50 links to a 100 kB file must not write 5 MB."""
    payload = os.urandom(100_000)
    links = [(_member(f"link-{i}", tarfile.LNKTYPE, "data.bin"), b"") for i in range(50)]
    archive = tmp_path / "links.tar"
    archive.write_bytes(_tar((_member("data.bin"), payload), *links))
    extract_safely(archive, tmp_path / "x")
    source = (tmp_path / "x" / "data.bin").stat()
    assert source.st_nlink == 51
    for i in range(50):
        link = (tmp_path / "x" / f"link-{i}").stat()
        assert (link.st_ino, link.st_dev) == (source.st_ino, source.st_dev)


def test_a_later_member_replaces_a_hard_link_without_touching_its_twin(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(
        _tar(
            (_member("data.bin"), b"original"),
            (_member("twin.bin", tarfile.LNKTYPE, "data.bin"), b""),
            (_member("twin.bin"), b"replaced"),
        )
    )
    extract_safely(archive, tmp_path / "x")
    assert (tmp_path / "x" / "data.bin").read_bytes() == b"original"
    assert (tmp_path / "x" / "twin.bin").read_bytes() == b"replaced"


def _pax_sparse_tar(size: int) -> bytes:
    """A PAX (GNU 1.0) sparse member: a map saying "all holes", unpacking to ``size`` zeros."""
    info = tarfile.TarInfo("GNUSparseFile.0/holes.bin")
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "holes.bin",
        "GNU.sparse.realsize": str(size),
    }
    sparse_map = b"1\n0\n0\n".ljust(tarfile.BLOCKSIZE, b"\0")
    info.size = len(sparse_map)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(sparse_map))
    return buffer.getvalue()


def _gnu_sparse_tar(tmp_path: Path, size: int) -> bytes:
    if shutil.which("tar") is None:
        pytest.skip("no tar command on this machine")
    source = tmp_path / "src"
    source.mkdir()
    with (source / "holes.bin").open("wb") as out:
        out.truncate(size)
    subprocess.run(["tar", "-C", str(source), "-cSf", str(tmp_path / "s.tar"), "."], check=True)
    return (tmp_path / "s.tar").read_bytes()


@pytest.mark.parametrize("kind", ["pax", "gnu"])
def test_sparse_members_are_refused(kind: str, tmp_path: Path) -> None:
    size = 64 * 1024  # small: refused for being sparse, not for its size
    body = _pax_sparse_tar(size) if kind == "pax" else _gnu_sparse_tar(tmp_path, size)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert any(member.issparse() for member in tar)
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    with pytest.raises(UnsafeArchiveError, match="is a sparse file"):
        rest.download_checkpoint(STUB_PATH, tmp_path / "out").result(timeout=30)
    assert _leftovers(tmp_path / "out") == []


def test_a_compressed_archive_may_not_unpack_to_far_more_than_it_weighs(tmp_path: Path) -> None:
    size = MIN_EXTRACTED_LIMIT + 4 * 1024 * 1024
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    body = buffer.getvalue()
    assert len(body) * 10 < MIN_EXTRACTED_LIMIT  # so the 16 MiB floor is the limit
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    with pytest.raises(UnsafeArchiveError, match=f"more than {MIN_EXTRACTED_LIMIT} bytes"):
        rest.download_checkpoint(STUB_PATH, tmp_path / "out").result(timeout=60)
    assert _leftovers(tmp_path / "out") == []
    # The limit is the caller's to raise.
    target = rest.download_checkpoint(STUB_PATH, tmp_path / "out", max_extracted_bytes=size).result(
        timeout=60
    )
    assert (target / "zeros.bin").stat().st_size == size


def test_max_extracted_bytes_counts_every_regular_file(tmp_path: Path) -> None:
    body = _tar(*[(_member(f"part-{i}"), b"x" * 1000) for i in range(3)])
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    with pytest.raises(UnsafeArchiveError, match="'part-2' brings it to 3000") as refused:
        rest.download_checkpoint(STUB_PATH, tmp_path, max_extracted_bytes=2999).result(30)
    assert "max_extracted_bytes" in str(refused.value)
    assert _leftovers(tmp_path) == []
    target = rest.download_checkpoint(STUB_PATH, tmp_path, max_extracted_bytes=3000).result(30)
    assert len(list(target.iterdir())) == 3


def test_hard_links_do_not_count_towards_the_limit(tmp_path: Path) -> None:
    links = [(_member(f"link-{i}", tarfile.LNKTYPE, "data.bin"), b"") for i in range(50)]
    archive = tmp_path / "links.tar"
    archive.write_bytes(_tar((_member("data.bin"), b"x" * 1000), *links))
    extract_safely(archive, tmp_path / "x", max_bytes=1000)
    assert len(list((tmp_path / "x").iterdir())) == 51


# the I/O loop -----------------------------------------------------------------------------


def test_disk_writes_do_not_block_the_io_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the archive's file write is stuck (a slow disk), the loop that also runs every
    client's heartbeats and polls must go on serving other work."""
    writing, release = threading.Event(), threading.Event()
    real_open = Path.open

    class SlowDisk:
        def __init__(self, real: Any) -> None:
            self._real = real

        def write(self, data: bytes) -> int:
            writing.set()
            assert release.wait(timeout=60), "the test never released the write"
            return int(self._real.write(data))

        def close(self) -> None:
            self._real.close()

        def __enter__(self) -> SlowDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    def slow_open(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        opened = real_open(path, mode, *args, **kwargs)
        is_archive = path.name == "archive.tar" and "w" in mode
        return SlowDisk(opened) if is_archive else opened

    monkeypatch.setattr(Path, "open", slow_open)
    body = _tar((_member("adapter.safetensors"), b"weights"))
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    calls: list[str] = []
    progress_thread: list[int] = []

    def on_progress(done: int, total: int | None) -> None:
        progress_thread.append(threading.get_ident())

    download = rest.download_checkpoint(STUB_PATH, tmp_path, progress=on_progress)
    try:
        assert writing.wait(timeout=30)

        async def probe(ctx: LoopContext) -> int:
            calls.append("probe")
            return threading.get_ident()

        started = time.monotonic()
        loop_thread = Runtime.get().loop().call(probe).result(timeout=10)
        assert time.monotonic() - started < 10
    finally:
        release.set()
    target = download.result(timeout=30)
    assert (target / "adapter.safetensors").read_bytes() == b"weights"
    assert calls == ["probe"]
    assert set(progress_thread) == {loop_thread}  # progress still runs on the I/O loop
