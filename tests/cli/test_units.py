"""The pure parts of the command line: rendering examples, the batch schedule, the PNG."""

from __future__ import annotations

import io
import json
import shlex
import struct
import zlib
from pathlib import Path

import pytest

from tinkex.cli.command_line import continue_command
from tinkex.cli.dataset import DataError, Example, Segment, load_examples, render
from tinkex.cli.output import write_result_file
from tinkex.cli.plot import Canvas, encode_png, write_line_chart
from tinkex.cli.progress import StepProgress
from tinkex.cli.run_dir import RunDirectory
from tinkex.cli.train import train
from tinkex.cli.trainer import BatchSchedule
from tinkex.tokenizers import load_tokenizer

BYTES = load_tokenizer("tinkex/byte-level")
EOS = 257


def trained_text(example: Example) -> tuple[str, str]:
    """(all text, the trained characters) of a rendered example, from its datum."""
    datum = render(example, BYTES, [EOS])
    inputs = datum.model_input.to_ints()
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    weights = datum.loss_fn_inputs["weights"].tolist()
    assert inputs[1:] == targets[:-1] and targets[-1] == EOS
    text = bytes(inputs[:1] + targets[:-1]).decode()
    trained = bytes(t for t, w in zip(targets, weights, strict=True) if w and t < 256).decode()
    assert weights[-1] == (1.0 if example.segments[-1].trained else 0.0)  # the EOS
    return text, trained


def test_prompt_completion_trains_the_completion_only(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "2+2=", "completion": "4!"}\n')
    [example] = load_examples(data)
    assert trained_text(example) == ("2+2=4!", "4!")
    assert example.prompt == "2+2="
    assert example.where == f"{data}:1"


def test_text_trains_everything_but_the_first_token() -> None:
    example = Example((Segment("hello", True),))
    assert trained_text(example) == ("hello", "ello")
    assert example.prompt is None


def test_chat_template_trains_assistant_turns(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"messages": [{"role": "system", "content": "be brief"}, '
        '{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, '
        '{"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"}]}\n'
    )
    [example] = load_examples(data)
    text, trained = trained_text(example)
    assert text == "system: be brief\nuser: hi\nassistant: yo\nuser: bye\nassistant: ciao\n"
    assert trained == "yo\nciao\n"
    assert example.prompt == "system: be brief\nuser: hi\nassistant: "


def test_an_example_too_short_to_learn_from() -> None:
    with pytest.raises(DataError, match="needs at least 2"):
        render(Example((Segment("a", True),), "d.jsonl:7"), BYTES, [])


def test_batch_schedule_covers_each_epoch_once_and_is_reproducible() -> None:
    schedule = BatchSchedule(10, 4, seed=1)
    assert schedule.steps_per_epoch == 3
    epochs = [
        [i for step in range(e * 3 + 1, e * 3 + 4) for i in schedule.indices(step)]
        for e in range(3)
    ]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert epochs[0] != epochs[1], "every epoch is a new shuffle"
    # a resumed run computes the same batch for a step, whatever it computed before
    assert BatchSchedule(10, 4, seed=1).indices(8) == schedule.indices(8)
    assert BatchSchedule(10, 4, seed=2).indices(1) != BatchSchedule(10, 4, seed=1).indices(1)


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGB pixels of an unfiltered 8-bit RGB PNG; checks every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        offset += 12 + length
    width, height, depth, color, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, color) == (8, 2) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 3 * width + 1
    assert all(raw[row * stride] == 0 for row in range(height))
    pixels = b"".join(raw[row * stride + 1 : (row + 1) * stride] for row in range(height))
    return width, height, pixels


def test_png_round_trips_pixels() -> None:
    canvas = Canvas(5, 3)
    canvas.set(4, 2, (1, 2, 3))
    canvas.line(0, 0, 4, 0, (9, 9, 9))
    width, height, pixels = decode_png(encode_png(canvas))
    assert (width, height) == (5, 3)
    assert pixels[3 * (2 * 5 + 4) : 3 * (2 * 5 + 4) + 3] == bytes((1, 2, 3))
    assert pixels[:15] == bytes((9, 9, 9)) * 5
    assert pixels[15:18] == bytes((255, 255, 255))


def test_line_chart_draws_the_curve_from_corner_to_corner(tmp_path: Path) -> None:
    path = tmp_path / "loss.png"
    write_line_chart(path, [(1, 4.0), (2, 2.0), (3, float("nan")), (4, 1.0)], width=200, height=120)
    width, _, pixels = decode_png(path.read_bytes())
    blue = bytes((31, 119, 180))
    drawn = {
        (i // 3 % width, i // 3 // width)
        for i in range(0, len(pixels), 3)
        if pixels[i : i + 3] == blue
    }
    xs = sorted(x for x, _ in drawn)
    # the curve spans the plot from its left edge (x=70) to its right edge (width - 20)
    assert xs[0] <= 71 and xs[-1] >= width - 21
    left_top = min(y for x, y in drawn if x <= 71)
    right_bottom = max(y for x, y in drawn if x >= width - 21)
    assert left_top < right_bottom, "the falling loss goes down the picture"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal_and_prints_lines_elsewhere() -> None:
    terminal, log = _Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = StepProgress(10, stream=stream)
        progress.step(1, 2.5, 1234.0)
        progress.step(10, 0.5, 2000.0)
        progress.note("done")
    rewritten, after = terminal.getvalue().split("\n", 1)
    assert rewritten.count("\r[") == 2 and rewritten.endswith("loss 0.5000  2,000 tokens/s")
    assert after == "done\n"
    shrinking = _Terminal()
    progress = StepProgress(10, stream=shrinking)
    progress.step(1, 2.5, 12345.0)
    progress.step(2, 2.0, 5.0)  # a shorter line covers all of the longer one
    first, second = shrinking.getvalue().split("\r")[1:]
    assert len(second) == len(first) and second.rstrip().endswith(" 5 tokens/s")
    assert log.getvalue().splitlines() == [
        "step  1/10  loss 2.5000  1,234 tokens/s",
        "step 10/10  loss 0.5000  2,000 tokens/s",
        "done",
    ]


def test_a_result_file_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_result_file(path, "first\n")
    write_result_file(path, "second\n")
    assert path.read_text() == "second\n"
    taken = tmp_path / "taken"
    (taken / "child").mkdir(parents=True)  # a non-empty directory cannot be replaced
    with pytest.raises(OSError):
        write_result_file(taken, "lost\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "taken"], "no leftovers"


def test_rewinding_a_run_directory_forgets_later_steps_and_cut_lines(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    for step in (1, 2, 3, 4):
        run.append_metrics({"step": step, "loss": 5.0 - step})
    with run.metrics.open("a") as out:
        out.write('{"step": 5, "lo')  # a crash in the middle of a line
    run.write_checkpoints({"checkpoints": [{"step": 2, "path": "a"}, {"step": 4, "path": "b"}]})
    assert run.rewind(2) == [{"step": 2, "path": "a"}]
    assert run.losses() == [(1.0, 4.0), (2.0, 3.0)]
    run.append_metrics({"step": 3, "loss": 1.5})
    assert [json.loads(line)["step"] for line in run.metrics.read_text().splitlines()] == [1, 2, 3]
    assert RunDirectory(tmp_path / "new").rewind(7) == []


def test_the_continue_command_is_the_command_line_quoted_without_the_key() -> None:
    secret = "tml-never-in-the-hint-0123"
    args = ["--data", "my data.jsonl", "--sample-prompt", "it's", "--sample-prompt", "b"]
    args += ["--rank", "8", "--api-key", secret, "--base-url", "http://h:1", "--json"]
    with train.make_context("tinkex train", args) as ctx:
        hint = continue_command(ctx, "tinker://r/weights/step-000002", Path("runs/x"))
    assert secret not in hint
    command, note = hint.split("  ")
    assert note == "(plus your --api-key, left out here)"
    assert shlex.split(command) == [
        "tinkex",
        "train",
        "--data",
        "my data.jsonl",
        "--sample-prompt",
        "it's",
        "--sample-prompt",
        "b",
        "--base-url",
        "http://h:1",
        "--json",
        "--resume",
        "tinker://r/weights/step-000002",
        "--output",
        "runs/x",
    ]  # --rank is the checkpoint's: --resume refuses it


def test_opening_words_leave_one_to_complete() -> None:
    def opening(text: str) -> str | None:
        return Example((Segment(text, True),)).opening(3)

    assert opening("let it crash and restart") == "let it crash"
    assert opening("  two words") == "  two"
    assert opening("single") is None
