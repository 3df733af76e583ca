"""RestClient against a real ``tinkex serve``: runs, checkpoints, sessions, paging, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, new_key
from tests.conftest import API_KEY
from tinkex import telemetry
from tinkex.config import Config
from tinkex.transport import HTTP_REQUEST_EVENT


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


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("http://run/weights/a", "must start with 'tinker://'"),
        ("tinker://run/weights", "three non-empty parts"),
        ("tinker:///weights/a", "three non-empty parts"),
        ("tinker://run/weights/a/b", "three non-empty parts"),
        ("tinker://run/checkpoint/a", "kind 'checkpoint' is not one of"),
        (42, "must be a string"),
    ],
)
def test_bad_tinker_paths_fail_before_any_request(path: Any, expected: str) -> None:
    rest = tinkex.RestClient(base_url="http://127.0.0.1:9", api_key="tml-unused")
    for call in (
        rest.delete_checkpoint_from_tinker_path,
        rest.publish_checkpoint_from_tinker_path,
        rest.get_training_run_by_tinker_path,
        rest.get_weights_info_by_tinker_path,
        rest.get_checkpoint_archive_url_from_tinker_path,
    ):
        error = _no_requests_sent(call, path)
        assert expected in str(error)
        assert "tinker://" in str(error)  # it shows what a valid path looks like


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
        ("set_checkpoint_ttl_from_tinker_path", ("tinker://r/weights/a", 0), "positive whole"),
        ("set_checkpoint_ttl_from_tinker_path", ("tinker://r/weights/a", 1.5), "positive whole"),
        ("get_sampler", (None,), "sampler_id must be a non-empty string"),
    ],
)
def test_bad_arguments_name_the_argument(method: str, args: tuple[Any, ...], expected: str) -> None:
    rest = tinkex.RestClient(base_url="http://127.0.0.1:9", api_key="tml-unused")
    assert expected in str(_no_requests_sent(getattr(rest, method), *args))


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
