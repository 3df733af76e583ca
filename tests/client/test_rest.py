"""RestClient against a real ``tinkex serve``: runs, checkpoints, sessions, paging, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, new_key
from tests.conftest import API_KEY
from tinkex import telemetry
from tinkex.clients.rest import ExperimentalWarning
from tinkex.config import Config
from tinkex.transport import HTTP_REQUEST_EVENT
from tinkex.types.rest import (
    MAX_TTL_SECONDS,
    ActiveSessionStatusQuery,
    ClientFinishedSessionStatusQuery,
    ClientSessionFinished,
    SessionActive,
    SessionSearchRequest,
    UserSearchOwner,
)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server in open mode: every fresh key is a tenant with nothing in it yet."""
    pytest.importorskip("torch")
    from tinkex.local import LocalServer, ServerConfig

    config = ServerConfig(port=0, data_dir=tmp_path_factory.mktemp("rest-server"))
    with LocalServer(config) as server:
        yield server


@dataclass
class Tenant:
    service: tinkex.ServiceClient
    rest: tinkex.RestClient
    runs: list[tinkex.TrainingClient]
    paths: list[str]


@pytest.fixture(scope="module")
def tenant(open_server: Any) -> Iterator[Tenant]:
    """Three runs of one fresh tenant holding five training and two sampler checkpoints."""
    with tinkex.ServiceClient(base_url=open_server.url, api_key=new_key()) as service:
        runs = [
            service.create_lora_training_client(BASE_MODEL, rank=4, seed=i).result(timeout=60)
            for i in range(3)
        ]
        states = [runs[i % 2].save_state(f"step-{i}") for i in range(5)]
        samplers = [runs[0].save_weights_for_sampler(f"sample-{i}") for i in range(2)]
        paths = [save.result(timeout=60).path for save in states]
        paths += [str(save.result(timeout=60).path) for save in samplers]
        yield Tenant(service, service.create_rest_client(), runs, paths)


def _no_requests_sent(call: Any, *args: Any) -> ValueError:
    """Run ``call(*args)``, which must raise ValueError without touching the network."""
    with (
        telemetry.capture(f"{HTTP_REQUEST_EVENT}.start") as sent,
        pytest.raises(ValueError) as raised,
    ):
        call(*args)
    assert sent == []
    return raised.value


# paging -----------------------------------------------------------------------------------


def test_paging_user_checkpoints_returns_each_exactly_once(tenant: Tenant) -> None:
    seen: list[str] = []
    totals = set()
    for offset in range(0, 9, 3):
        page = tenant.rest.list_user_checkpoints(limit=3, offset=offset).result(timeout=30)
        assert page.cursor is not None
        assert (page.cursor.offset, page.cursor.limit) == (offset, 3)
        totals.add(page.cursor.total_count)
        seen += [c.tinker_path for c in page.checkpoints]
    assert totals == {7}
    assert sorted(seen) == sorted(tenant.paths)


def test_paging_training_runs_returns_each_exactly_once(tenant: Tenant) -> None:
    pages = [tenant.rest.list_training_runs(limit=2, offset=o).result(30) for o in (0, 2, 4)]
    ids = [run.training_run_id for page in pages for run in page.training_runs]
    assert sorted(ids) == sorted(run.model_id for run in tenant.runs)
    assert [len(page.training_runs) for page in pages] == [2, 1, 0]
    assert {page.cursor.total_count for page in pages} == {3}


# runs and checkpoints ---------------------------------------------------------------------


def test_runs_weights_info_and_checkpoint_lists(tenant: Tenant) -> None:
    rest, first = tenant.rest, tenant.runs[0]
    run = rest.get_training_run(first.model_id).result(timeout=30)
    assert (run.training_run_id, run.base_model, run.lora_rank) == (first.model_id, BASE_MODEL, 4)
    assert run.last_sampler_checkpoint is not None
    assert run.last_sampler_checkpoint.tinker_path == tenant.paths[-1]
    assert rest.get_training_run_by_tinker_path(tenant.paths[2]).result(30) == run

    info = rest.get_weights_info_by_tinker_path(tenant.paths[0]).result(timeout=30)
    assert (info.base_model, info.is_lora, info.lora_rank) == (BASE_MODEL, True, 4)

    listed = rest.list_checkpoints(first.model_id).result(timeout=30).checkpoints
    assert [c.checkpoint_id for c in listed] == [
        "weights/step-0",
        "weights/step-2",
        "weights/step-4",
        "sampler_weights/sample-0",
        "sampler_weights/sample-1",
    ]
    assert {c.checkpoint_type for c in listed} == {"training", "sampler"}


def test_publish_ttl_and_delete_round_trip(tenant: Tenant) -> None:
    rest = tenant.rest
    path = tenant.runs[2].save_state("managed").result(timeout=60).path
    run_id = tenant.runs[2].model_id

    def current() -> tinkex.types.Checkpoint:
        (found,) = [
            c for c in rest.list_checkpoints(run_id).result(30).checkpoints if c.tinker_path == path
        ]
        return found

    rest.publish_checkpoint_from_tinker_path(path).result(timeout=30)
    assert current().public
    rest.unpublish_checkpoint_from_tinker_path(path).result(timeout=30)
    assert not current().public

    before = datetime.now(UTC)
    rest.set_checkpoint_ttl_from_tinker_path(path, 7200).result(timeout=30)
    after = datetime.now(UTC)
    expires = current().expires_at
    assert expires is not None
    assert before + timedelta(seconds=7200) <= expires <= after + timedelta(seconds=7200)
    rest.set_checkpoint_ttl_from_tinker_path(path, None).result(timeout=30)
    assert current().expires_at is None

    rest.delete_checkpoint(run_id, "weights/managed").result(timeout=30)
    assert path not in [c.tinker_path for c in rest.list_checkpoints(run_id).result(30).checkpoints]
    with pytest.raises(tinkex.NotFoundError, match="does not exist") as gone:
        rest.delete_checkpoint_from_tinker_path(path).result(timeout=30)
    assert path in str(gone.value)


def test_sessions_and_samplers(tenant: Tenant) -> None:
    rest = tenant.rest
    session_id = tenant.service.session_id
    assert rest.list_sessions().result(timeout=30).sessions == [session_id]
    session = rest.get_session(session_id).result(timeout=30)
    assert sorted(session.training_run_ids) == sorted(run.model_id for run in tenant.runs)
    sampler = tenant.service.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
    sampler_id = sampler.sampling_session_id
    got = rest.get_sampler(sampler_id).result(timeout=30)
    assert (got.sampler_id, got.base_model) == (sampler_id, BASE_MODEL)
    assert sampler_id in rest.get_session(session_id).result(timeout=30).sampler_ids


def test_capabilities_and_create_rest_client_shares_the_config(tenant: Tenant) -> None:
    assert tenant.rest.config is tenant.service.config
    models = tenant.rest.get_server_capabilities().result(timeout=30).supported_models
    assert BASE_MODEL in [m.model_name for m in models]


async def test_async_twins_return_the_values(tenant: Tenant) -> None:
    rest = tenant.rest
    run_id = tenant.runs[1].model_id
    run, listed, page, info = await asyncio.gather(
        rest.get_training_run_async(run_id),
        rest.list_checkpoints_async(run_id),
        rest.list_user_checkpoints_async(limit=2),
        rest.get_weights_info_by_tinker_path_async(tenant.paths[1]),
    )
    assert run.training_run_id == run_id
    assert [c.checkpoint_id for c in listed.checkpoints] == ["weights/step-1", "weights/step-3"]
    assert len(page.checkpoints) == 2 and info.lora_rank == 4
    sessions = await rest.list_sessions_async()
    assert sessions.sessions == [tenant.service.session_id]
    # As in the official SDK, the twin is the value, and the plain call's future is awaitable
    # (0.38's recommended spelling): both give the same answer.
    assert await rest.get_training_run(run_id) == run


# errors -----------------------------------------------------------------------------------


def test_other_tenants_see_nothing(open_server: Any, tenant: Tenant) -> None:
    with tinkex.RestClient(base_url=open_server.url, api_key=new_key()) as stranger:
        with pytest.raises(tinkex.NotFoundError, match="does not exist"):
            stranger.get_training_run(tenant.runs[0].model_id).result(timeout=30)
        with pytest.raises(tinkex.NotFoundError):
            stranger.delete_checkpoint_from_tinker_path(tenant.paths[0]).result(timeout=30)
        assert stranger.list_user_checkpoints().result(30).checkpoints == []
    assert tenant.rest.get_training_run(tenant.runs[0].model_id).result(30)


def test_wrong_api_key_is_an_authentication_error_without_the_key(base_url: str) -> None:
    wrong = "tml-not-the-right-key-0123456789"
    rest = tinkex.RestClient(base_url=base_url, api_key=wrong)
    with pytest.raises(tinkex.AuthenticationError, match="invalid API key") as raised:
        rest.list_training_runs().result(timeout=30)
    assert wrong not in str(raised.value) and wrong not in repr(rest)
    good = tinkex.RestClient(base_url=base_url, api_key=API_KEY)
    assert good.list_training_runs(limit=1).result(timeout=30).cursor.limit == 1


def _tinker_path_calls(rest: tinkex.RestClient, out: Path) -> dict[str, Callable[[Any], Any]]:
    """Every method that takes a ``tinker://`` path, with its other arguments filled in."""
    return {
        "delete": rest.delete_checkpoint_from_tinker_path,
        "publish": rest.publish_checkpoint_from_tinker_path,
        "unpublish": rest.unpublish_checkpoint_from_tinker_path,
        "ttl": lambda path: rest.set_checkpoint_ttl_from_tinker_path(path, 7200),
        "run": rest.get_training_run_by_tinker_path,
        "weights_info": rest.get_weights_info_by_tinker_path,
        "archive_url": rest.get_checkpoint_archive_url_from_tinker_path,
        "download": lambda path: rest.download_checkpoint(path, out),
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("http://run/weights/a", "must start with 'tinker://'"),
        ("tinker://run/weights", "three non-empty parts"),
        ("tinker:///weights/a", "three non-empty parts"),
        ("tinker://run/weights/a/b", "three non-empty parts"),
        ("tinker://run/checkpoint/a", "kind 'checkpoint' is not one of"),
        ("tinker://../weights/a", "its training_run_id '..' is a dot segment"),
        ("tinker://./weights/a", "its training_run_id '.' is a dot segment"),
        ("tinker://run/weights/..", "its name '..' is a dot segment"),
        ("tinker://run/sampler_weights/.", "its name '.' is a dot segment"),
        (42, "must be a string"),
    ],
)
def test_bad_tinker_paths_fail_before_any_request(path: Any, expected: str, tmp_path: Path) -> None:
    rest = tinkex.RestClient(base_url="http://127.0.0.1:9", api_key="tml-unused")
    for name, call in _tinker_path_calls(rest, tmp_path / "out").items():
        error = _no_requests_sent(call, path)
        assert expected in str(error), name
        assert "tinker://" in str(error), name  # it shows what a valid path looks like
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("method", "args", "expected"),
    [
        ("get_training_run", ("..",), "training_run_id '..' is not an id"),
        ("get_training_run", (".", "accessible"), "training_run_id '.' is not an id"),
        ("list_checkpoints", ("..",), "training_run_id '..' is not an id"),
        ("delete_checkpoint", ("..", "weights/a"), "training_run_id '..' is not an id"),
        (
            "delete_checkpoint",
            ("run", "weights/.."),
            "checkpoint_id 'weights/..': its name '..' is not an id",
        ),
        ("get_checkpoint_archive_url", (".", "weights/a"), "training_run_id '.' is not an id"),
        (
            "get_checkpoint_archive_url",
            ("run", "weights/."),
            "checkpoint_id 'weights/.': its name '.' is not an id",
        ),
        ("get_session", ("..",), "session_id '..' is not an id"),
        ("get_sampler", (".",), "sampler_id '.' is not an id"),
        ("assign_session_project", ("..", "proj"), "session_id '..' is not an id"),
        ("assign_session_project", ("a/b", "proj"), "session_id 'a/b' must not contain '/'"),
        ("assign_session_project", ("s", " "), "project_id must be a non-empty string"),
    ],
)
def test_dot_segment_ids_fail_before_any_request(
    method: str, args: tuple[Any, ...], expected: str
) -> None:
    """httpx normalises ``training_runs/../checkpoints`` to ``checkpoints``: sent, such an id
    would silently reach another endpoint (``list_checkpoints('..')`` would list the
    user's checkpoints)."""
    rest = tinkex.RestClient(base_url="http://127.0.0.1:9", api_key="tml-unused")
    error = _no_requests_sent(getattr(rest, method), *args)
    assert expected in str(error)


TTL_RANGE = "from 3600 (one hour) to 315360000 (ten years), or None"


@pytest.mark.parametrize(
    ("method", "args", "expected"),
    [
        ("list_training_runs", (0,), "limit must be a whole number >= 1"),
        ("list_training_runs", (10, -1), "offset must be a whole number >= 0"),
        ("list_user_checkpoints", (True,), "limit must be a whole number"),
        ("list_user_checkpoints", (100_000,), "limit must be at most 10000"),
        ("list_sessions", (20, 0, "everyone"), "access_scope must be 'owned' or 'accessible'"),
        ("get_training_run", ("", "owned"), "training_run_id must be a non-empty string"),
        ("get_training_run", ("a/b",), "must not contain '/'"),
        ("delete_checkpoint", ("run", "step-3"), "'<kind>/<name>'"),
        ("delete_checkpoint", ("run", "bogus/step-3"), "e.g. 'weights/step-10'"),
        ("set_checkpoint_ttl_from_tinker_path", ("tinker://r/weights/a", 0), TTL_RANGE),
        ("set_checkpoint_ttl_from_tinker_path", ("tinker://r/weights/a", 1.5), TTL_RANGE),
        ("set_checkpoint_ttl_from_tinker_path", ("tinker://r/weights/a", 3599), TTL_RANGE),
        ("set_checkpoint_ttl_from_tinker_path", ("tinker://r/weights/a", True), TTL_RANGE),
        (
            "set_checkpoint_ttl_from_tinker_path",
            ("tinker://r/weights/a", MAX_TTL_SECONDS + 1),
            TTL_RANGE,
        ),
        ("search_sessions", ({"limit": 5},), "must be a tinkex.types.rest.SessionSearchRequest"),
        (
            "download_checkpoint",
            ("tinker://r/weights/a", "out", False, None, 0),
            "max_extracted_bytes must be a positive whole number",
        ),
        ("get_sampler", (None,), "sampler_id must be a non-empty string"),
    ],
)
def test_bad_arguments_name_the_argument(method: str, args: tuple[Any, ...], expected: str) -> None:
    rest = tinkex.RestClient(base_url="http://127.0.0.1:9", api_key="tml-unused")
    call = getattr(rest, method)
    if method == "download_checkpoint":  # keyword-only options
        path, out, force, progress, limit = args
        error = _no_requests_sent(
            lambda: call(path, out, force=force, progress=progress, max_extracted_bytes=limit)
        )
    else:
        error = _no_requests_sent(call, *args)
    assert expected in str(error)


def test_ttl_bounds_are_the_servers(tenant: Tenant) -> None:
    """The client-side range is exactly the server's: both ends are accepted there."""
    path = tenant.runs[2].save_state("ttl-bounds").result(timeout=60).path
    run_id = tenant.runs[2].model_id
    try:
        for ttl in (3600, MAX_TTL_SECONDS):
            before = datetime.now(UTC)
            tenant.rest.set_checkpoint_ttl_from_tinker_path(path, ttl).result(timeout=30)
            (found,) = [
                c
                for c in tenant.rest.list_checkpoints(run_id).result(30).checkpoints
                if c.tinker_path == path
            ]
            assert found.expires_at is not None
            assert found.expires_at >= before + timedelta(seconds=ttl)
    finally:
        tenant.rest.delete_checkpoint_from_tinker_path(path).result(timeout=30)


def test_repr_hides_credentials_in_the_base_url() -> None:
    rest = tinkex.RestClient(base_url="http://alice:s3cr3t@127.0.0.1:9", api_key="tml-unused")
    assert "s3cr3t" not in repr(rest) and "alice" not in repr(rest)
    assert "127.0.0.1:9" in repr(rest)


def test_closed_client_refuses_calls() -> None:
    with tinkex.RestClient(base_url="http://127.0.0.1:9", api_key="tml-unused") as rest:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        rest.list_sessions()


def test_config_and_settings_are_exclusive() -> None:
    config = Config(api_key="tml-unused", base_url="http://127.0.0.1:9")
    with pytest.raises(TypeError, match=r"config\.replace"):
        tinkex.RestClient(config=config, base_url="http://127.0.0.1:10")
    assert tinkex.RestClient(config=config).config is config


def test_ids_are_escaped_into_one_path_segment() -> None:
    """A run id with URL-special characters reaches the server as one segment."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"detail": "no such run"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    config = Config(api_key="tml-unused", base_url="http://stub.test", http_client=client)
    with pytest.raises(tinkex.NotFoundError, match="no such run"):
        tinkex.RestClient(config=config).get_training_run("s-1:train:0 ?#").result(timeout=30)
    assert seen == ["/api/v1/training_runs/s-1:train:0%20%3F%23?access_scope=owned"]


# archive URLs -----------------------------------------------------------------------------


def test_archive_url_is_a_signed_redirect(open_server: Any, tenant: Tenant) -> None:
    path = tenant.paths[0]
    before = datetime.now(UTC)
    located = tenant.rest.get_checkpoint_archive_url_from_tinker_path(path).result(timeout=30)
    after = datetime.now(UTC)
    assert located.url.startswith(open_server.url + "/api/v1/checkpoint_archive?token=")
    lifetime = timedelta(minutes=15)  # the Expires header has whole seconds
    assert before + lifetime - timedelta(seconds=1) <= located.expires <= after + lifetime

    # The URL works without an API key; altered, it is refused.
    with httpx.Client() as plain:
        assert plain.get(located.url).headers["content-type"] == "application/x-tar"
        forged = plain.get(located.url.replace("token=", "token=A"))
    assert forged.status_code == 403 and "not valid" in forged.json()["detail"]

    stranger = tinkex.RestClient(base_url=open_server.url, api_key=new_key())
    with pytest.raises(tinkex.NotFoundError):
        stranger.get_checkpoint_archive_url_from_tinker_path(path).result(timeout=30)


def test_archive_url_is_read_from_the_redirect_even_on_a_client_that_follows_them(
    open_server: Any, tenant: Tenant
) -> None:
    """The redirect is the answer: an injected HTTP client set to follow redirects must not
    fetch the archive instead (the request asks it not to follow this one)."""
    following = httpx.AsyncClient(follow_redirects=True)
    config = Config(api_key=tenant.rest.config.api_key, base_url=open_server.url)
    rest = tinkex.RestClient(config=config.replace(http_client=following))
    located = rest.get_checkpoint_archive_url_from_tinker_path(tenant.paths[0]).result(30)
    assert located.url.startswith(open_server.url + "/api/v1/checkpoint_archive?token=")


def test_an_archive_url_dies_with_its_checkpoint(tenant: Tenant) -> None:
    """A token is not a copy of the files: once the checkpoint is deleted, its URL is a 404."""
    path = tenant.runs[2].save_state("doomed").result(timeout=60).path
    located = tenant.rest.get_checkpoint_archive_url_from_tinker_path(path).result(timeout=30)
    tenant.rest.delete_checkpoint_from_tinker_path(path).result(timeout=30)
    with httpx.Client() as plain:
        gone = plain.get(located.url)
    assert gone.status_code == 404 and path in gone.json()["detail"]


def test_archive_url_also_accepts_a_json_answer() -> None:
    """The 0.25 protocol allows ``{url, expires}`` instead of a redirect (the local server
    always redirects, so a stub plays that server)."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/training_runs/r1/checkpoints/weights/w1/archive"
        return httpx.Response(
            200, json={"url": "https://store.test/a.tar?sig=x", "expires": "2030-01-02T03:04:05Z"}
        )

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    config = Config(api_key="tml-unused", base_url="http://stub.test", http_client=client)
    located = tinkex.RestClient(config=config).get_checkpoint_archive_url("r1", "weights/w1")
    answer = located.result(timeout=30)
    assert answer.url == "https://store.test/a.tar?sig=x"
    assert answer.expires == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


# sharing, projects and session search ------------------------------------------------------


def _fresh(server: Any, **session: Any) -> tinkex.ServiceClient:
    return tinkex.ServiceClient(base_url=server.url, api_key=new_key(), **session)


def test_accessible_scope_adds_runs_with_a_published_checkpoint(
    open_server: Any, tmp_path: Path
) -> None:
    with _fresh(open_server) as alice_service, _fresh(open_server) as bob_service:
        alice, bob = alice_service.create_rest_client(), bob_service.create_rest_client()
        shared = alice_service.create_lora_training_client(BASE_MODEL, rank=4).result(60)
        public = shared.save_state("public").result(timeout=60).path
        private = shared.save_state("private").result(timeout=60).path  # the latest
        mine = bob_service.create_lora_training_client(BASE_MODEL, rank=4).result(60)

        def accessible_ids() -> set[str]:
            page = bob.list_training_runs(limit=1000, access_scope="accessible").result(30)
            return {run.training_run_id for run in page.training_runs}

        assert shared.model_id not in accessible_ids()
        alice.publish_checkpoint_from_tinker_path(public).result(timeout=30)

        assert {shared.model_id, mine.model_id} <= accessible_ids()
        owned = bob.list_training_runs(access_scope="owned").result(30).training_runs
        assert [run.training_run_id for run in owned] == [mine.model_id]
        # Bob sees only the published checkpoints of Alice's run; Alice sees all of them.
        seen = bob.get_training_run(shared.model_id, "accessible").result(timeout=30)
        assert seen.last_checkpoint is not None and seen.last_checkpoint.tinker_path == public
        own = alice.get_training_run(shared.model_id).result(timeout=30)
        assert own.last_checkpoint is not None and own.last_checkpoint.tinker_path == private
        with pytest.raises(tinkex.NotFoundError):
            bob.get_training_run(shared.model_id).result(timeout=30)  # owned scope

        # The published checkpoint's archive is readable by Bob, the private one is not.
        target = bob.download_checkpoint(public, tmp_path).result(timeout=60)
        assert (target / "adapter.safetensors").is_file()
        with pytest.raises(tinkex.NotFoundError):
            bob.get_checkpoint_archive_url_from_tinker_path(private).result(timeout=30)

        # Unpublishing hides the run again and revokes the URL Bob already holds.
        located = bob.get_checkpoint_archive_url_from_tinker_path(public).result(timeout=30)
        alice.unpublish_checkpoint_from_tinker_path(public).result(timeout=30)
        assert shared.model_id not in accessible_ids()
        with httpx.Client() as plain:
            assert plain.get(located.url).status_code == 404
        with pytest.raises(tinkex.NotFoundError):
            bob.get_training_run(shared.model_id, "accessible").result(timeout=30)

        # Sessions are never shared: "accessible" sessions are the owned ones.
        sessions = bob.list_sessions(access_scope="accessible").result(30).sessions
        assert sessions == [bob_service.session_id]
        with pytest.raises(tinkex.NotFoundError):
            bob.get_session(alice_service.session_id, "accessible").result(timeout=30)


def test_the_server_names_the_valid_access_scopes(open_server: Any) -> None:
    headers = {"X-API-Key": new_key()}
    with httpx.Client(base_url=open_server.url + "/api/v1", headers=headers) as raw:
        for path in ("training_runs", "training_runs/r1", "sessions", "sessions/s1"):
            answer = raw.get(path, params={"access_scope": "everyone"})
            assert answer.status_code == 400, path
            assert "use 'owned' or 'accessible'" in answer.json()["detail"], path


def test_project_id_filters_runs_and_assign_session_project_moves_them(
    open_server: Any,
) -> None:
    key = new_key()
    with (
        tinkex.ServiceClient(base_url=open_server.url, api_key=key, project_id="proj-a") as a,
        tinkex.ServiceClient(base_url=open_server.url, api_key=key) as other,
    ):
        rest = a.create_rest_client()
        in_a = a.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
        moved = other.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)

        def run_ids(project_id: str | None) -> list[str]:
            page = rest.list_training_runs(project_id=project_id).result(timeout=30)
            assert page.cursor.total_count == len(page.training_runs)
            return sorted(run.training_run_id for run in page.training_runs)

        assert run_ids("proj-a") == [in_a.model_id]
        assert run_ids("default") == [moved.model_id]  # sessions made without a project
        assert run_ids("proj-b") == []
        assert run_ids(None) == sorted([in_a.model_id, moved.model_id])

        rest.assign_session_project(other.session_id, "proj-a").result(timeout=30)
        assert run_ids("proj-a") == sorted([in_a.model_id, moved.model_id])
        assert run_ids("default") == []

        with pytest.raises(tinkex.NotFoundError, match="does not exist"):
            rest.assign_session_project("session-unknown", "proj-a").result(timeout=30)
        stranger = tinkex.RestClient(base_url=open_server.url, api_key=new_key())
        with pytest.raises(tinkex.NotFoundError):
            stranger.assign_session_project(a.session_id, "proj-x").result(timeout=30)


def _search(rest: tinkex.RestClient, **filters: Any) -> list[str]:
    with pytest.warns(ExperimentalWarning, match="experimental"):
        page = rest.search_sessions(SessionSearchRequest(**filters)).result(timeout=30)
    return [summary.session_id for summary in page.sessions]


def test_search_sessions_filters_pages_and_reports_status(open_server: Any) -> None:
    key = new_key()

    def session(**options: Any) -> tinkex.ServiceClient:
        return tinkex.ServiceClient(base_url=open_server.url, api_key=key, **options)

    nightly = session(display_name="Nightly SFT run", user_metadata={"team": "core"})
    weekly = session(display_name="weekly eval", project_id="proj-e", user_metadata={"n": 3})
    done = session(display_name="nightly RL")
    ids = [client.session_id for client in (nightly, weekly, done)]  # created in this order
    training = nightly.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
    saved = training.save_state("searched").result(timeout=60)
    done.close("interrupted", "stopped by hand").result(timeout=30)
    rest = nightly.create_rest_client()
    try:
        newest_first = list(reversed(ids))
        assert _search(rest) == newest_first
        assert _search(rest, display_name="NIGHTLY") == [ids[2], ids[0]]
        assert _search(rest, display_name="run sft") == [ids[0]]  # every word, any order
        assert _search(rest, display_name="sft run", session_id=ids[1]) == [ids[1], ids[0]]
        assert _search(rest, user_metadata={"team": "core"}) == [ids[0]]
        assert _search(rest, user_metadata={"n": "3"}) == [ids[1]]  # JSON values as text
        assert _search(rest, project_ids=["proj-e"]) == [ids[1]]
        assert _search(rest, project_ids=["default"]) == [ids[2], ids[0]]
        assert _search(rest, statuses=[ActiveSessionStatusQuery()]) == [ids[1], ids[0]]
        finished = ClientFinishedSessionStatusQuery(reasons=["interrupted"])
        assert _search(rest, statuses=[finished]) == [ids[2]]
        assert _search(rest, statuses=[ClientFinishedSessionStatusQuery(reasons=["success"])]) == []

        # Pages of one: each session exactly once, then no cursor.
        seen, request = [], SessionSearchRequest(limit=1)
        for _ in range(len(ids)):
            with pytest.warns(ExperimentalWarning):
                page = rest.search_sessions(request).result(timeout=30)
            seen += [summary.session_id for summary in page.sessions]
            request = request.model_copy(update={"cursor": page.next_cursor})
        assert seen == newest_first and page.next_cursor is None

        with pytest.warns(ExperimentalWarning):
            page = rest.search_sessions(SessionSearchRequest()).result(timeout=30)
        by_id = {summary.session_id: summary for summary in page.sessions}
        first = by_id[ids[0]]
        assert isinstance(first.status, SessionActive)
        assert (first.checkpoints_count, first.display_name) == (1, "Nightly SFT run")
        stored = rest.list_checkpoints(training.model_id).result(30).checkpoints
        assert [c.tinker_path for c in stored] == [saved.path]
        assert first.checkpoint_storage_bytes == stored[0].size_bytes
        assert first.project_id == "default" and by_id[ids[1]].project_id == "proj-e"
        last = by_id[ids[2]].status
        assert isinstance(last, ClientSessionFinished)
        assert (last.reason.type, last.detail) == ("interrupted", "stopped by hand")

        # Tenants are isolated: another owner id finds nothing, the caller's own finds all.
        me = first.owner
        assert _search(rest, owner=UserSearchOwner(owner_urns=[me])) == newest_first
        assert _search(rest, owner=UserSearchOwner(owner_urns=["user-else"])) == []
        stranger = tinkex.RestClient(base_url=open_server.url, api_key=new_key())
        assert _search(stranger, owner={"type": "accessible"}) == []
    finally:
        for client in (nightly, weekly, done):
            client.close()


async def test_async_twins_of_management_calls(open_server: Any, tmp_path: Path) -> None:
    with _fresh(open_server) as service:
        rest = service.create_rest_client()
        training = service.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
        path = training.save_state("twins").result(timeout=60).path
        other = training.save_state("twins-2").result(timeout=60).path
        run_id = training.model_id

        async def current() -> tinkex.types.Checkpoint:
            listed = await rest.list_checkpoints_async(run_id)
            (found,) = [c for c in listed.checkpoints if c.tinker_path == path]
            return found

        await rest.publish_checkpoint_from_tinker_path_async(path)
        assert (await current()).public
        await rest.unpublish_checkpoint_from_tinker_path_async(path)
        assert not (await current()).public
        await rest.set_checkpoint_ttl_from_tinker_path_async(path, 7200)
        assert (await current()).expires_at is not None
        by_id = await rest.get_checkpoint_archive_url_async(run_id, "weights/twins")
        by_path = await rest.get_checkpoint_archive_url_from_tinker_path_async(path)
        with httpx.Client() as plain:
            assert plain.get(by_id.url).content == plain.get(by_path.url).content

        session = await rest.get_session_async(service.session_id)
        assert session.training_run_ids == [run_id]
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
        got = await rest.get_sampler_async(sampler.sampling_session_id)
        assert got.base_model == BASE_MODEL
        await rest.assign_session_project_async(service.session_id, "proj-twins")
        page = await rest.list_training_runs_async(project_id="proj-twins")
        assert [run.training_run_id for run in page.training_runs] == [run_id]
        assert (await rest.get_training_run_by_tinker_path_async(path)).training_run_id == run_id
        assert BASE_MODEL in [
            m.model_name for m in (await rest.get_server_capabilities_async()).supported_models
        ]
        await rest.delete_checkpoint_async(run_id, "weights/twins")
        await rest.delete_checkpoint_from_tinker_path_async(other)
        assert (await rest.list_checkpoints_async(run_id)).checkpoints == []
