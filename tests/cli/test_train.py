"""``tinkex train`` against a real server: outputs, resume, Ctrl-C, and every refusal."""

from __future__ import annotations

import json
import re
import shlex
import signal
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import (
    Invoke,
    fails,
    invoke,
    json_of,
    ok,
    run_tinkex,
    write_jsonl,
)
from tests.conftest import API_KEY

TRAIN = ("train", "--base-model", "tinkex/tiny-llama")
PAIRS = [("hot", "cold"), ("up", "down"), ("big", "small"), ("day", "night")]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rows = [{"prompt": f"opposite of {a}:", "completion": f" {b}"} for a, b in PAIRS]
    return write_jsonl(tmp_path / "data.jsonl", rows)


def metrics(output: Path) -> list[dict[str, Any]]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def checkpoints(output: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((output / "checkpoints.json").read_text())
    return summary


def png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert raw[12:16] == b"IHDR"
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def test_train_writes_metrics_checkpoints_curve_and_samples(
    cli: Invoke, data: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    result = ok(
        cli(
            *TRAIN,
            "--data",
            str(data),
            "--steps",
            "6",
            "--batch-size",
            "4",
            "--save-every",
            "3",
            "--sample-prompt",
            "opposite of hot:",
            "--sample-max-tokens",
            "4",
            "--output",
            str(output),
        )
    )
    assert [f"step {n}/6" in result.stderr for n in range(1, 7)] == [True] * 6
    records = metrics(output)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r["trained_tokens"] > 0 and r["tokens_per_second"] > 0 for r in records)
    assert records[-1]["loss"] < records[0]["loss"]

    summary = checkpoints(output)
    assert summary["step"] == 6 and summary["interrupted"] is False
    assert summary["state_path"].endswith("/weights/step-000006")
    assert summary["sampler_path"].endswith("/sampler_weights/step-000006")
    assert [c["step"] for c in summary["checkpoints"]] == [3, 6]
    assert f"checkpoint: {summary['state_path']}" in result.stdout
    assert "sample: 'opposite of hot:' -> " in result.stdout
    assert [json.loads(line)["prompt"] for line in (output / "samples.jsonl").open()] == [
        "opposite of hot:"
    ]
    assert png_size(output / "loss.png") == (640, 360)
    assert API_KEY not in result.stdout + result.stderr

    # the server holds both training checkpoints, each with the step it was saved after
    listed = json_of(cli("checkpoint", "list", "--run-id", summary["training_run_id"], "--json"))
    steps = {
        c["tinker_path"]: (c["user_metadata"] or {}).get("tinkex_train_step")
        for c in listed["checkpoints"]
    }
    assert {c["path"]: str(c["step"]) for c in summary["checkpoints"]}.items() <= steps.items()


def test_a_resumed_run_trains_exactly_as_an_uninterrupted_one(
    cli: Invoke, data: Path, tmp_path: Path
) -> None:
    common = ["--data", str(data), "--batch-size", "2", "--sample-prompt", "up"]
    straight = tmp_path / "straight"
    ok(cli(*TRAIN, *common, "--steps", "6", "--output", str(straight)))

    output = tmp_path / "run"
    ok(cli(*TRAIN, *common, "--steps", "3", "--output", str(output)))
    saved = checkpoints(output)["state_path"]
    result = ok(cli(*TRAIN, *common, "--steps", "6", "--resume", saved, "--output", str(output)))
    assert "trained tinkex/tiny-llama for 3 steps" in result.stdout
    records = metrics(output)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    # the same weights, the same AdamW moments and step count, the same batches: the same
    # losses, bit for bit (a weights-only restore resets the moments: step 5 on differs)
    assert [r["loss"] for r in records] == [r["loss"] for r in metrics(straight)]
    summary = checkpoints(output)
    assert summary["resumed_from"] == saved
    assert [c["step"] for c in summary["checkpoints"]] == [3, 6]


def test_resuming_an_earlier_checkpoint_retrains_the_later_steps_once(
    cli: Invoke, data: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    common = ["--data", str(data), "--batch-size", "4", "--sample-prompt", "up"]
    ok(cli(*TRAIN, *common, "--steps", "4", "--save-every", "2", "--output", str(output)))
    at_step_2 = checkpoints(output)["checkpoints"][0]
    assert at_step_2["step"] == 2
    with (output / "metrics.jsonl").open("a") as out:
        out.write('{"step": 5, "loss"')  # as if the process died writing step 5

    ok(cli(*TRAIN, *common, "--steps", "5", "--resume", at_step_2["path"], "--output", str(output)))
    assert [r["step"] for r in metrics(output)] == [1, 2, 3, 4, 5]
    assert [c["step"] for c in checkpoints(output)["checkpoints"]] == [2, 5]


def test_resuming_a_checkpoint_not_saved_by_train_counts_from_zero(
    cli: Invoke, data: Path, tmp_path: Path
) -> None:
    meta = tmp_path / "c.json"
    ok(
        cli(
            "checkpoint",
            "--base-model",
            "tinkex/tiny-llama",
            "--output",
            str(meta),
            "--kind",
            "state",
            "--rank",
            "8",
        )
    )
    saved = json.loads(meta.read_text())["state_path"]
    output = tmp_path / "run"
    result = ok(
        cli(
            "train",
            "--data",
            str(data),
            "--resume",
            saved,
            "--steps",
            "2",
            "--output",
            str(output),
            "--sample-prompt",
            "up",
            "--sample-max-tokens",
            "1",
        )
    )
    assert f"cannot tell which step {saved} was saved after" in result.stderr
    assert [r["step"] for r in metrics(output)] == [1, 2]


def test_an_invalid_resume_path_is_refused_before_anything_starts(
    cli: Invoke, data: Path, tmp_path: Path
) -> None:
    result = cli(
        "train", "--data", str(data), "--resume", "weights/x", "--output", str(tmp_path / "r")
    )
    fails(result, 1, "invalid tinker path 'weights/x'")
    assert not (tmp_path / "r").exists()


def test_resuming_sampler_weights_says_a_training_state_is_needed(
    cli: Invoke, data: Path, tmp_path: Path
) -> None:
    meta = tmp_path / "c.json"
    ok(cli("checkpoint", *TRAIN[1:], "--output", str(meta), "--kind", "sampler", "--rank", "8"))
    sampler = json.loads(meta.read_text())["sampler_path"]
    output = tmp_path / "run"
    stderr = fails(
        cli("train", "--data", str(data), "--resume", sampler, "--output", str(output)),
        1,
        f"error: --resume {sampler} holds sampler weights, without the optimizer state; "
        "resuming needs a training-state checkpoint, tinker://",
    )
    assert "cannot tell which step" not in stderr
    assert not output.exists()


def test_resuming_a_missing_checkpoint_fails_on_it_alone(
    cli: Invoke, data: Path, tmp_path: Path
) -> None:
    missing = "tinker://no-such-run/weights/step-000003"
    output = tmp_path / "runs" / "a"
    stderr = fails(
        cli("train", "--data", str(data), "--resume", missing, "--output", str(output)), 1, "404"
    )
    assert "cannot tell which step" not in stderr, "no note about a checkpoint that is not there"
    assert not (tmp_path / "runs").exists(), "a failed run leaves no empty --output behind"


def test_epochs_and_every_row_form_train(cli: Invoke, tmp_path: Path) -> None:
    rows = [
        {"prompt": "2+2=", "completion": "4"},
        {"text": "let it crash"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    ]
    data = write_jsonl(tmp_path / "mixed.jsonl", rows)
    output = tmp_path / "run"
    args = ["--data", str(data), "--epochs", "2", "--batch-size", "2", "--output", str(output)]
    summary = json_of(cli(*TRAIN, *args, "--sample-max-tokens", "2", "--json"))
    assert summary["step"] == 4  # 2 epochs of ceil(3 / 2) batches
    # default sample prompts: the untrained prefix of each example that has one
    assert [s["prompt"] for s in summary["samples"]] == ["2+2=", "user: hi\nassistant: "]
    assert [r["step"] for r in metrics(output)] == [1, 2, 3, 4]


def test_text_rows_are_sampled_from_their_first_words(cli: Invoke, tmp_path: Path) -> None:
    rows = [{"text": "let it crash and restart"}, {"text": "a b"}, {"text": "one"}]
    data = write_jsonl(tmp_path / "texts.jsonl", rows)
    args = ["--data", str(data), "--steps", "1", "--sample-max-tokens", "2"]
    result = ok(cli(*TRAIN, *args, "--output", str(tmp_path / "run")))
    assert "sample: 'let it crash' -> " in result.stdout
    assert "sample: 'a' -> " in result.stdout
    assert result.stdout.count("sample: ") == 2  # a single word leaves nothing to complete


def test_data_without_anything_to_sample_from_says_so(cli: Invoke, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "words.jsonl", [{"text": "one"}, {"text": "two"}])
    result = ok(cli(*TRAIN, "--data", str(data), "--steps", "1", "--output", str(tmp_path / "r")))
    assert "no samples will be printed at the end; pass --sample-prompt TEXT" in result.stderr
    assert "sample: " not in result.stdout


def test_the_readme_command_trains_the_bundled_data_locally_and_prints_samples(
    tmp_path: Path,
) -> None:
    """``tinkex train --local`` with no data: the first command of the README (fewer steps)."""
    process = run_tinkex(["train", "--local", "--steps", "2"], home=tmp_path, cwd=tmp_path)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert re.search(
        r"^tinkex: started the embedded local Tinker backend at http://127\.0\.0\.1:\d+$",
        stderr,
        re.MULTILINE,
    ), stderr
    assert "step 2/2" in stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("trained tinkex/tiny-llama for 2 steps: loss ")
    samples = lines[-3:]
    assert [s.split(" -> ")[0] for s in samples] == [
        "sample: 'opposite of hot:'",
        "sample: 'opposite of up:'",
        "sample: 'opposite of big:'",
    ], stdout
    [run] = (tmp_path / "tinkex-runs").iterdir()  # the default --output
    assert [r["step"] for r in metrics(run)] == [1, 2]
    assert (tmp_path / ".tinkex" / "local").is_dir()  # the default --data-dir, under HOME


def test_ctrl_c_saves_a_checkpoint_exits_130_and_the_run_resumes(
    data: Path, tmp_path: Path
) -> None:
    data_dir, output = tmp_path / "backend", tmp_path / "run"
    process = run_tinkex(
        [
            "train",
            "--local",
            "--data-dir",
            str(data_dir),
            "--data",
            str(data),
            "--steps",
            "100000",
            "--batch-size",
            "4",
            "--output",
            str(output),
        ],
        home=tmp_path,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("step "):
            break
    else:
        pytest.fail(f"no step line before exit {process.wait()}")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=90)
    assert process.returncode == 130, stderr

    summary = checkpoints(output)
    assert summary["interrupted"] is True and summary["sampler_path"] is None
    step = summary["step"]
    assert step >= 1 and summary["state_path"].endswith(f"/weights/step-{step:06d}")
    assert f"checkpoint: {summary['state_path']}" in stdout
    assert f"interrupted after step {step}" in stderr
    assert [r["step"] for r in metrics(output)] == list(range(1, step + 1))
    # the hint repeats the whole command line, with --resume added
    hint = re.search(r"continue with: (.*)$", stderr, re.MULTILINE)
    assert hint is not None, stderr
    assert shlex.split(hint.group(1)) == [
        "tinkex",
        "train",
        "--data",
        str(data),
        "--steps",
        "100000",
        "--batch-size",
        "4",
        "--local",
        "--data-dir",
        str(data_dir),
        "--resume",
        summary["state_path"],
        "--output",
        str(output),
    ]

    # the checkpoint outlives the process: resume it from the same backend storage
    from tinkex.backend import LOCAL_API_KEY
    from tinkex.local import LocalServer, ServerConfig

    with LocalServer(ServerConfig(port=0, data_dir=data_dir)) as server:
        resumed = invoke(
            [
                "train",
                "--base-url",
                server.url,
                "--api-key",
                LOCAL_API_KEY,
                "--data",
                str(data),
                "--batch-size",
                "4",
                "--steps",
                str(step + 2),
                "--resume",
                summary["state_path"],
                "--output",
                str(output),
                "--sample-prompt",
                "up",
                "--sample-max-tokens",
                "2",
            ]
        )
    ok(resumed)
    assert [r["step"] for r in metrics(output)] == list(range(1, step + 3))


def test_resuming_past_the_last_step_says_so(cli: Invoke, data: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    ok(
        cli(
            *TRAIN,
            "--data",
            str(data),
            "--steps",
            "1",
            "--output",
            str(output),
            "--sample-prompt",
            "up",
            "--sample-max-tokens",
            "1",
        )
    )
    saved = checkpoints(output)["state_path"]
    again = cli(
        *TRAIN, "--data", str(data), "--steps", "1", "--resume", saved, "--output", str(output)
    )
    fails(again, 1, "saved after step 1", "--steps is 1", "pass --steps above 1")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"prompt": "a", "completion": "b"}\n{"prompt": \n', "data.jsonl:2: not JSON"),
        (b'{"foo": "a"}\n', "data.jsonl:1: a row has keys ['foo']"),
        (b'{"text": "caf\xe9"}\n', "data.jsonl:1: not UTF-8"),
        (b"\n\n", "holds no examples"),
        (b'{"prompt": "a", "completion": 3}\n', 'data.jsonl:1: "completion" must be a string'),
        (b'{"text": ""}\n', 'data.jsonl:1: "text" is empty'),
        (b"[1, 2]\n", "data.jsonl:1: a row must be a JSON object"),
        (
            b'{"messages": [{"role": "user", "content": "hi"}]}\n',
            'no "assistant" message',
        ),
        (b'{"messages": [{"content": "hi"}]}\n', 'messages[0]: "role" is missing'),
    ],
)
def test_bad_training_data_is_a_clear_error(
    cli: Invoke, tmp_path: Path, content: bytes, expected: str
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_bytes(content)
    fails(cli(*TRAIN, "--data", str(data), "--output", str(tmp_path / "run")), 1, expected)
    assert not (tmp_path / "run").exists(), "nothing is written for unusable data"


def test_a_missing_data_file_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    fails(cli(*TRAIN, "--data", str(missing)), 1, f"No such file or directory: {missing}")


def test_an_output_directory_of_another_run_is_refused(
    cli: Invoke, data: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    output.mkdir()
    (output / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    fails(
        cli(*TRAIN, "--data", str(data), "--output", str(output)),
        1,
        "already holds a training run",
    )
    assert (output / "metrics.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--steps", "2", "--epochs", "1"], "pass --steps or --epochs, not both"),
        (["--resume", "tinker://r/weights/x", "--rank", "8"], "--rank cannot be combined"),
        (["--steps", "0"], "Invalid value for '--steps'"),
    ],
)
def test_usage_errors_exit_2(cli: Invoke, args: list[str], expected: str) -> None:
    fails(cli(*TRAIN, *args), 2, expected)


def test_a_remote_service_needs_a_base_model(data: Path, base_url: str) -> None:
    result = invoke(["train", "--data", str(data), "--base-url", base_url, "--api-key", API_KEY])
    fails(result, 2, "Missing option '--base-model'")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--local", "--base-url", "http://127.0.0.1:1"], "--local starts an embedded backend"),
        (
            ["--data-dir", "x", "--base-url", "http://127.0.0.1:1", "--api-key", API_KEY],
            "--data-dir is the storage of the embedded local backend",
        ),
    ],
)
def test_backend_options_that_contradict_each_other(args: list[str], expected: str) -> None:
    fails(invoke(["train", *args]), 2, expected)


def test_server_refusals_exit_1(cli: Invoke, data: Path, tmp_path: Path) -> None:
    stderr = fails(
        cli(
            "train",
            "--data",
            str(data),
            "--base-model",
            "no/such-model",
            "--output",
            str(tmp_path / "run"),
        ),
        1,
        "no/such-model",
    )
    assert stderr.startswith("error: ")
    assert not (tmp_path / "run").exists(), "a failed run leaves no empty --output behind"


def test_a_wrong_api_key_is_refused_and_never_echoed(
    base_url: str, data: Path, tmp_path: Path
) -> None:
    secret = "tml-not-the-right-secret-0123456789"
    result = invoke(
        [
            "train",
            "--data",
            str(data),
            "--base-model",
            "tinkex/tiny-llama",
            "--output",
            str(tmp_path / "run"),
            "--base-url",
            base_url,
            "--api-key",
            secret,
        ]
    )
    stderr = fails(result, 1, "401")
    assert secret not in stderr and secret[4:] not in stderr
