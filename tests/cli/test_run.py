"""``tinkex run``: sampling from base models and trained weights, prompt files, run listings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Invoke, fails, invoke, json_of, ok
from tests.conftest import API_KEY

MODEL = ("--base-model", "tinkex/tiny-llama")


@pytest.fixture(scope="module")
def saved(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One saved checkpoint (training state and sampler weights) of a fresh run."""
    output = tmp_path_factory.mktemp("run-cli") / "checkpoint.json"
    ok(
        invoke(
            [
                "checkpoint",
                *MODEL,
                "--output",
                str(output),
                "--name",
                "start",
                "--seed",
                "3",
                "--base-url",
                base_url,
                "--api-key",
                API_KEY,
            ]
        )
    )
    metadata: dict[str, Any] = json.loads(output.read_text())
    return metadata


def test_text_output_shows_each_sample(cli: Invoke) -> None:
    result = ok(cli("run", *MODEL, "--prompt", "hello", "--max-tokens", "4", "--num-samples", "2"))
    assert "Sample 1 (stop_reason=" in result.stdout
    assert "Sample 2 (stop_reason=" in result.stdout
    assert "avg_logprob=" in result.stdout
    assert result.stderr == ""


def test_json_is_the_servers_answer_and_nothing_else(cli: Invoke) -> None:
    args = ["run", *MODEL, "--prompt", "hello", "--max-tokens", "3", "--num-samples", "2"]
    sampling = ["--seed", "7", "--temperature", "0.9", "--top-p", "0.9", "--top-k", "50"]
    answer = json_of(cli(*args, *sampling, "--json"))
    assert answer["type"] == "sample"
    assert len(answer["sequences"]) == 2
    for sequence in answer["sequences"]:
        assert len(sequence["tokens"]) <= 3
        assert len(sequence["logprobs"]) == len(sequence["tokens"])
    again = json_of(cli(*args, *sampling, "--format", "json"))
    tokens = [s["tokens"] for s in answer["sequences"]]
    assert [s["tokens"] for s in again["sequences"]] == tokens, "a seed makes samples repeatable"


def test_stop_and_max_tokens(cli: Invoke) -> None:
    # seeded: unseeded, an untrained model samples its end-of-sequence token now and then
    answer = json_of(
        cli("run", *MODEL, "--prompt", "ab", "--max-tokens", "5", "--seed", "1", "--json")
    )
    assert [s["stop_reason"] for s in answer["sequences"]] == ["length"]
    assert len(answer["sequences"][0]["tokens"]) == 5
    # greedy sampling repeats one continuation: stopping at its first character ends it there
    greedy = ["run", *MODEL, "--prompt", "ab", "--temperature", "0", "--json"]
    first = json_of(cli(*greedy, "--max-tokens", "5"))["sequences"][0]["tokens"][0]
    stopped = json_of(cli(*greedy, "--max-tokens", "5", "--stop", chr(first), "--stop", "zz"))
    assert stopped["sequences"][0]["stop_reason"] == "stop"
    assert stopped["sequences"][0]["tokens"] == [first]


def test_prompt_logprobs_and_top_k(cli: Invoke) -> None:
    args = ["run", *MODEL, "--prompt", "hello", "--max-tokens", "1", "--prompt-logprobs"]
    answer = json_of(cli(*args, "--topk-prompt-logprobs", "2", "--json"))
    assert len(answer["prompt_logprobs"]) == 5 and answer["prompt_logprobs"][0] is None
    assert all(len(top) == 2 for top in answer["topk_prompt_logprobs"][1:])
    text = ok(cli(*args)).stdout
    assert "Prompt logprobs" in text and "'h'" in text


@pytest.mark.parametrize(
    ("content", "prompt_length"),
    [
        (b"hello\n", 6),  # text, used exactly as written
        (b"[104, 105]", 2),
        (b'  {"tokens": [104, 105, 33]}\n', 3),
    ],
)
def test_prompt_files(cli: Invoke, tmp_path: Path, content: bytes, prompt_length: int) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes(content)
    args = ["run", *MODEL, "--prompt-file", str(prompt), "--max-tokens", "1"]
    answer = json_of(cli(*args, "--prompt-logprobs", "--json"))
    assert len(answer["prompt_logprobs"]) == prompt_length


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"caf\xe9", "is not UTF-8 text"),
        (b"[1, 2", "starts with '[' but is not valid JSON"),
        (b'{"tokens": [1, 2]', "starts with '{' but is not valid JSON"),
        (b'{"ids": [1]}', 'expected only "tokens"'),
        (b"[1, -2]", "token 1 is -2, not a non-negative integer"),
        (b"[]", "must be a non-empty JSON array"),
        (b"", "is empty"),
    ],
)
def test_bad_prompt_files_are_clear_errors(
    cli: Invoke, tmp_path: Path, content: bytes, expected: str
) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes(content)
    fails(cli("run", *MODEL, "--prompt-file", str(prompt)), 1, str(prompt), expected)


def test_an_unreadable_prompt_file_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    fails(
        cli("run", *MODEL, "--prompt-file", str(missing)), 1, f"cannot read prompt file {missing}"
    )
    fails(cli("run", *MODEL, "--prompt-file", str(tmp_path)), 1, "cannot read prompt file")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--prompt", "x"], "Missing option '--base-model' or '--model-path'"),
        ([*MODEL, "--model-path", "tinker://r/sampler_weights/x", "--prompt", "x"], "not both"),
        ([*MODEL], "Missing option '--prompt' or '--prompt-file'"),
        ([*MODEL, "--prompt", "x", "--prompt-file", "f"], "not both"),
        ([*MODEL, "--prompt", "x", "--top-p", "0"], "Invalid value for '--top-p'"),
        ([*MODEL, "--prompt", "x", "--temperature", "-1"], "Invalid value for '--temperature'"),
        (
            ["--prompt", "x", "--max-tokens", "2", "list"],
            "--prompt and --max-tokens are sampling options; they cannot be used with "
            "`tinkex run list`",
        ),
        (["--timeout", "5", "info", "r"], "--timeout must follow the subcommand: `tinkex run info"),
    ],
)
def test_usage_errors_exit_2(cli: Invoke, args: list[str], expected: str) -> None:
    fails(cli("run", *args), 2, expected)


def test_sampling_trained_weights_and_writing_to_a_file(
    cli: Invoke, saved: dict[str, Any], tmp_path: Path
) -> None:
    output = tmp_path / "samples.json"
    args = ["run", "--model-path", saved["sampler_path"], "--prompt", "hi", "--max-tokens", "2"]
    result = ok(cli(*args, "--json", "--output", str(output)))
    assert result.stdout == ""
    assert f"wrote 1 sample(s) to {output}" in result.stderr
    assert len(json.loads(output.read_text())["sequences"]) == 1


def test_output_creates_its_directory_and_an_unusable_one_is_refused_first(
    cli: Invoke, tmp_path: Path
) -> None:
    output = tmp_path / "new" / "dir" / "samples.txt"
    args = ["run", *MODEL, "--prompt", "hi", "--max-tokens", "2"]
    ok(cli(*args, "--output", str(output)))
    assert output.read_text().startswith("Sample 1 (")
    assert [p.name for p in output.parent.iterdir()] == ["samples.txt"], "no partial file"
    fails(cli(*args, "--output", str(output / "x.txt")), 1, "cannot create the directory")


def test_server_refusals_exit_1(cli: Invoke) -> None:
    missing = "tinker://nobody:train:0/sampler_weights/none"
    fails(cli("run", "--model-path", missing, "--prompt", "x"), 1, "error: ")
    fails(cli("run", "--base-model", "no/such-model", "--prompt", "x"), 1, "no/such-model")


def test_run_list_and_info(cli: Invoke, saved: dict[str, Any]) -> None:
    run_id = saved["training_run_id"]
    listed = json_of(cli("run", "list", "--limit", "0", "--json"))
    assert run_id in [r["training_run_id"] for r in listed["training_runs"]]
    assert listed["shown"] == len(listed["training_runs"]) == listed["total"]
    one = json_of(cli("run", "list", "--limit", "1", "--json"))
    assert one["shown"] == 1 and one["total"] == listed["total"]

    table = ok(cli("run", "list", "--limit", "0")).stdout
    assert table.startswith("RUN ID") and run_id in table

    info = json_of(cli("run", "info", run_id, "--json"))
    assert info["base_model"] == "tinkex/tiny-llama" and info["lora_rank"] == 32
    shown = ok(cli("run", "info", run_id)).stdout
    assert "run id:" in shown and "rank 32" in shown and saved["state_path"] in shown


def test_run_info_of_an_unknown_run_exits_1(cli: Invoke) -> None:
    fails(cli("run", "info", "no-such-run"), 1, "404", "no-such-run")
