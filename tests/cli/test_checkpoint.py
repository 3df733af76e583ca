"""``tinkex checkpoint``: saving a fresh adapter, and managing checkpoints on the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Invoke, fails, json_of, ok

MODEL = ("--base-model", "tinkex/tiny-llama")


def save(cli: Invoke, tmp_path: Path, *extra: str) -> dict[str, Any]:
    output = tmp_path / "meta" / "checkpoint.json"
    result = ok(cli("checkpoint", *MODEL, "--output", str(output), *extra))
    metadata: dict[str, Any] = json.loads(output.read_text())
    for key in ("state_path", "sampler_path"):
        if metadata[key]:
            assert metadata[key] in result.stdout
    return metadata


def listed(cli: Invoke, run_id: str) -> dict[str, dict[str, Any]]:
    answer = json_of(cli("checkpoint", "list", "--run-id", run_id, "--json"))
    assert answer["run_id"] == run_id
    return {c["tinker_path"]: c for c in answer["checkpoints"]}


def test_save_writes_metadata_of_both_kinds(cli: Invoke, tmp_path: Path) -> None:
    metadata = save(cli, tmp_path, "--name", "first", "--rank", "4", "--no-train-unembed")
    run = metadata["training_run_id"]
    assert metadata["base_model"] == "tinkex/tiny-llama" and metadata["name"] == "first"
    assert metadata["state_path"] == f"tinker://{run}/weights/first"
    assert metadata["sampler_path"] == f"tinker://{run}/sampler_weights/first"
    assert metadata["lora"]["rank"] == 4 and metadata["lora"]["train_unembed"] is False
    assert set(listed(cli, run)) == {metadata["state_path"], metadata["sampler_path"]}

    info = json_of(cli("checkpoint", "info", metadata["state_path"], "--json"))
    assert info["weights_info"]["lora_rank"] == 4
    assert info["weights_info"]["train_unembed"] is False
    assert info["checkpoint"]["checkpoint_type"] == "training"
    shown = ok(cli("checkpoint", "info", metadata["state_path"])).stdout
    assert "rank 4" in shown and "tinkex/tiny-llama" in shown


@pytest.mark.parametrize(("kind", "saved"), [("state", "state_path"), ("sampler", "sampler_path")])
def test_save_one_kind(cli: Invoke, tmp_path: Path, kind: str, saved: str) -> None:
    metadata = save(cli, tmp_path, "--kind", kind)
    other = "sampler_path" if saved == "state_path" else "state_path"
    assert metadata[saved] and metadata[other] is None
    assert set(listed(cli, metadata["training_run_id"])) == {metadata[saved]}


def test_save_as_json_prints_the_metadata(cli: Invoke, tmp_path: Path) -> None:
    output = tmp_path / "c.json"
    printed = json_of(cli("checkpoint", *MODEL, "--output", str(output), "--json"))
    assert printed == json.loads(output.read_text())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--output", "c.json"], "Missing option '--base-model'"),
        ([*MODEL], "Missing option '--output'"),
        (
            ["--name", "x", "list"],
            "--name is a checkpoint-saving option; it cannot be used with `tinkex checkpoint list`",
        ),
        (["--json", "list"], "--json must follow the subcommand: `tinkex checkpoint list --json"),
    ],
)
def test_save_usage_errors_exit_2(cli: Invoke, args: list[str], expected: str) -> None:
    fails(cli("checkpoint", *args), 2, expected)


@pytest.mark.parametrize("ttl", ["5", "3599", "315360001"])
def test_a_ttl_outside_the_services_range_is_a_usage_error(cli: Invoke, ttl: str) -> None:
    fails(
        cli("checkpoint", "set-ttl", "tinker://r/weights/x", "--ttl", ttl),
        2,
        f"Invalid value for '--ttl': {ttl} is not in the range 3600<=x<=315360000",
    )


def test_an_unwritable_output_is_refused_before_anything_is_saved(
    cli: Invoke, tmp_path: Path
) -> None:
    runs_before = json_of(cli("run", "list", "--limit", "1", "--json"))["total"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    fails(
        cli("checkpoint", *MODEL, "--output", str(blocker / "c.json")),
        1,
        f"cannot create the directory of --output {blocker / 'c.json'}",
        "pass another --output",
    )
    assert json_of(cli("run", "list", "--limit", "1", "--json"))["total"] == runs_before


def test_publish_ttl_and_listing(cli: Invoke, tmp_path: Path) -> None:
    path = save(cli, tmp_path, "--kind", "state")["state_path"]
    run = path.split("/")[2]

    assert ok(cli("checkpoint", "publish", path)).stdout == f"published {path}\n"
    assert listed(cli, run)[path]["public"] is True
    assert json_of(cli("checkpoint", "unpublish", path, "--json")) == {
        "tinker_path": path,
        "public": False,
    }
    assert listed(cli, run)[path]["public"] is False

    ok(cli("checkpoint", "set-ttl", path, "--ttl", "3600"))
    assert listed(cli, run)[path]["expires_at"] is not None
    ok(cli("checkpoint", "set-ttl", path, "--remove"))
    assert listed(cli, run)[path]["expires_at"] is None
    ok(cli("checkpoint", "set-ttl", path, "--ttl", "315360000"))  # ten years: the longest
    fails(cli("checkpoint", "set-ttl", path), 2, "exactly one of --ttl SECONDS or --remove")
    fails(cli("checkpoint", "set-ttl", path, "--ttl", "3600", "--remove"), 2, "exactly one")

    mine = json_of(cli("checkpoint", "list", "--limit", "0", "--json"))
    assert path in [c["tinker_path"] for c in mine["checkpoints"]]
    table = ok(cli("checkpoint", "list", "--run-id", run)).stdout
    assert table.startswith("PATH") and path in table


def test_delete_asks_first_and_reports_failures(cli: Invoke, tmp_path: Path) -> None:
    metadata = save(cli, tmp_path)
    paths = [metadata["state_path"], metadata["sampler_path"]]
    run = metadata["training_run_id"]

    # an invalid path stops everything before anything is deleted
    fails(cli("checkpoint", "delete", paths[0], "tinker://bad", "--yes"), 1, "invalid tinker path")
    declined = ok(cli("checkpoint", "delete", *paths, input="n\n"))
    assert "nothing deleted" in declined.stderr
    fails(cli("checkpoint", "delete", *paths), 1, "no answer to the confirmation", "--yes")
    assert set(listed(cli, run)) == set(paths)

    confirmed = ok(cli("checkpoint", "delete", paths[0], input="y\n"))
    assert f"deleted {paths[0]}" in confirmed.stdout
    assert set(listed(cli, run)) == {paths[1]}

    partial = cli("checkpoint", "delete", *paths, "--yes", "--json")
    assert partial.exit_code == 1
    summary = json.loads(partial.stdout)
    assert summary["deleted"] == [paths[1]]
    assert [f["tinker_path"] for f in summary["failed"]] == [paths[0]]
    assert "1 of 2 deletion(s) failed" in partial.stderr
    assert listed(cli, run) == {}


def test_download_and_refusing_to_overwrite(cli: Invoke, tmp_path: Path) -> None:
    path = save(cli, tmp_path, "--kind", "state")["state_path"]
    target_root = tmp_path / "downloads"
    result = ok(cli("checkpoint", "download", path, "--output", str(target_root)))
    target = Path(result.stdout.strip())
    assert target.parent == target_root
    assert any(f.suffix == ".safetensors" for f in target.iterdir())

    fails(
        cli("checkpoint", "download", path, "--output", str(target_root)),
        1,
        "already exists",
        "--force",
    )
    forced = json_of(
        cli("checkpoint", "download", path, "--output", str(target_root), "--force", "--json")
    )
    assert forced["directory"] == str(target) and forced["bytes"] > 0


def test_unknown_checkpoints_exit_1(cli: Invoke) -> None:
    missing = "tinker://no-such-run/weights/none"
    for command in ("info", "publish", "download"):
        fails(cli("checkpoint", command, missing), 1, "error: ")
