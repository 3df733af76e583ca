"""Every example runs as a user runs it: a subprocess against the embedded local backend.

Each ``examples/*.py`` needs a row in :data:`PROOFS`: the flags that keep it short, the
output lines that show it did its job, and optionally a check of the numbers it printed
(a loss that fell, a reward that rose, a resumed run that matches the original). An example
without a row fails here, so none goes untested; a row without an example fails too.

The examples run one after another with the hosted-service variables removed from their
environment, so they always start ``tinkex serve`` in-process; nothing reaches the network.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import API_KEY
from tests.types.image_bytes import jpeg

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HOSTED_ENV = ("TINKER_API_KEY", "TINKER_BASE_URL", "TINKER_BASE_MODEL")
TEST_ONLY_ENV = ("TINKER_TELEMETRY",)  # set by tests/conftest.py, not by users
LOCAL_BACKEND = r"^started the embedded local Tinker backend at http://127\.0\.0\.1:\d+$"
RUN_TIMEOUT = 300.0
ATTACH_LOGGER_LINE = (
    r"^INFO queue_state_telemetry: tinkex\.queue\.state_change polls=\d+ .*"
    r"request_type='Sample' queue_state='{state}' .*$"
)
"""A record of ``telemetry.attach_logger`` on the example's own logger, not the library's."""


@dataclass(frozen=True)
class Proof:
    """How to run one example and what its output must show."""

    args: tuple[str, ...]
    lines: tuple[str, ...]
    """Regular expressions; each must match a whole line of stdout (``re.MULTILINE``)."""
    check: Callable[[str], None] | None = None
    """Further assertions on stdout, for numbers that must relate to each other."""


def floats(pattern: str, stdout: str) -> list[float]:
    """Every number captured by the one group of ``pattern`` in ``stdout``."""
    return [float(value) for value in re.findall(pattern, stdout, re.MULTILINE)]


def first_to_last(stdout: str, what: str) -> tuple[float, float]:
    """The two numbers of a ``<what>: first A -> last B`` summary line."""
    match = re.search(rf"^{what}: first (\S+) -> last (\S+)$", stdout, re.MULTILINE)
    assert match, f"no '{what}: first A -> last B' line"
    return float(match[1]), float(match[2])


def loss_fell(stdout: str) -> None:
    first, last = first_to_last(stdout, "loss/token")
    assert last < first, f"training did not lower the loss: {first} -> {last}"


def async_training_and_gather(stdout: str) -> None:
    losses = floats(r"^step \d+: loss/token (\S+)$", stdout)
    assert len(losses) == 2 and losses[1] < losses[0], f"async training did not learn: {losses}"
    # A loop blocked while the samples were awaited would run the 10 ms ticker about never.
    match = re.search(r"^the event loop ran the ticker (\d+) times .*about (\d+) if", stdout, re.M)
    assert match, "no ticker line"
    ticked, free = int(match[1]), int(match[2])
    assert ticked >= max(1, free // 4), f"the loop ran the ticker {ticked} of ~{free} times"


def focal_loss_fell(stdout: str) -> None:
    losses = floats(r"^step +\d+  focal loss +(\S+)  ", stdout)
    assert len(losses) == 3 and losses[-1] < losses[0], f"focal loss did not fall: {losses}"


def resume_matches(stdout: str) -> None:
    with_optimizer = floats(r"^restored with optimizer: max \|loss - original\| = (\S+)$", stdout)
    weights_only = floats(r"^restored weights only: +max \|loss - original\| = (\S+) ", stdout)
    assert with_optimizer == [0.0], "the run resumed with its optimizer left the original's path"
    assert weights_only[0] > 0.0, "restoring without the optimizer changed nothing"


def transitions_listed(stdout: str) -> None:
    stated = int(re.findall(r"^queue-state transitions: (\d+)$", stdout, re.MULTILINE)[0])
    listed = re.findall(r"^  (\w+): (paused_capacity|paused_rate_limit|active)$", stdout, re.M)
    assert len(listed) == stated, f"{stated} transitions announced, {len(listed)} listed"
    assert ("Sample", "paused_capacity") in listed and ("Sample", "active") in listed


def recovered_from_the_checkpoint(stdout: str) -> None:
    saved = floats(r"^checkpoint: tinker://\S+ \(loss (\S+)\)$", stdout)
    restored = floats(r"^loss of the recovered client (\S+) ", stdout)
    assert saved and saved == restored, f"recovered {restored}, checkpoint {saved}"


def reward_rose(stdout: str) -> None:
    rewards = floats(r"^iteration +\d+ +mean reward (\S+)", stdout)
    assert first_to_last(stdout, "mean reward") == (rewards[0], rewards[-1])
    assert rewards[-1] > rewards[0], f"RL did not raise the mean reward: {rewards}"


def samples_and_prompt_logprobs(stdout: str) -> None:
    assert len(re.findall(r"^sample \d+: ", stdout, re.MULTILINE)) == 3, "not 3 samples"
    stated = int(re.findall(r"^prompt logprobs \((\d+) tokens", stdout, re.MULTILINE)[0])
    rows = re.findall(r"^  +\S.* (None|-?\d+\.\d+)$", stdout, re.MULTILINE)
    assert len(rows) == stated, f"{stated} prompt tokens announced, {len(rows)} listed"
    assert rows[0] == "None", "the first prompt token has no context, so no logprob"
    assert all(float(row) <= 0 for row in rows[1:]), f"a logprob above 0: {rows}"


def daemon_finished_every_step_once(stdout: str) -> None:
    steps = re.findall(
        r"^step (\d+)/4  loss/token (\S+)  \(incarnation #(\d+)\)$", stdout, re.MULTILINE
    )
    assert [int(step) for step, _, _ in steps] == [1, 2, 3, 4], f"steps lost or repeated: {steps}"
    restarted = re.findall(r"^supervisor restarted 'trainer' as incarnation #(\d+)$", stdout, re.M)
    first, last = steps[0][2], steps[-1][2]
    assert restarted == [last] and first != last, f"{steps=} {restarted=}"
    # The new incarnation trained the same model on: a fresh one would start at the top again.
    before = [float(loss) for _, loss, incarnation in steps if incarnation == first]
    after = [float(loss) for _, loss, incarnation in steps if incarnation == last]
    assert max(after) < min(before), f"the restarted daemon did not continue the run: {steps}"


def trained_then_three_samples(stdout: str) -> None:
    losses = floats(r"^step +\d+  loss/token (\S+) ", stdout)
    assert len(losses) >= 2 and losses[-1] < losses[0], f"training did not learn: {losses}"
    assert len(re.findall(r"^sample: ", stdout, re.MULTILINE)) == 3, "not 3 samples"


PROOFS: dict[str, Proof] = {
    "async_usage.py": Proof(
        ("--steps", "2", "--requests", "8", "--max-tokens", "8"),
        (
            LOCAL_BACKEND,
            r"^gathered 8 samples concurrently in \d+\.\d+s$",
            r"^the event loop ran the ticker \d+ times while waiting \(about \d+ if .*\)$",
        ),
        async_training_and_gather,
    ),
    "checkpoints_and_resume.py": Proof(
        ("--steps", "2", "--more-steps", "2"),
        (
            LOCAL_BACKEND,
            r"^saved the training state: tinker://\S+/weights/resume-point$",
            r"^sampler weights: tinker://\S+/sampler_weights/resumed-final$",
            r"^  weights/resume-point +training +[\d,]+ bytes  expires \d{4}-\d\d-\d\dT.*$",
            r"^  sampler_weights/resumed-final +sampler +[\d,]+ bytes  expires never$",
        ),
        resume_matches,
    ),
    "custom_loss.py": Proof(
        ("--steps", "3"),
        (
            LOCAL_BACKEND,
            r"^step   3  focal loss .* mean p\(target\) \d\.\d+$",
            r"^focal loss: first \S+ -> last \S+ \(decreased\)$",
        ),
        focal_loss_fell,
    ),
    "queue_state_telemetry.py": Proof(
        (),
        (
            LOCAL_BACKEND,
            r"^WARNING tinkex\.queue: Sampling is paused for sampler \S+\. Reason: .*$",
            ATTACH_LOGGER_LINE.format(state="paused_capacity"),
            ATTACH_LOGGER_LINE.format(state="active"),
            r"^trained one step: loss:sum=\d+\.\d+$",
            r"^telemetry: [1-9]\d* events sent, 0 dropped$",
            r"^done: [1-9]\d* requests, [1-9]\d* queue-state transitions$",
        ),
        transitions_listed,
    ),
    "recovery.py": Proof(
        ("--steps", "2"),
        (
            LOCAL_BACKEND,
            r"^corrupted run \S+ through the local backend's test hook$",
            r"^the old client now fails: .*corrupted.*$",
            r"^signal tinkex\.recovery\.succeeded .*$",
            r"^recovered: \S+ -> \S+ from tinker://\S+/weights/before-crash$",
            r"^recovered step 2: loss \d+\.\d+$",
        ),
        recovered_from_the_checkpoint,
    ),
    "rl_importance_sampling.py": Proof(
        ("--iterations", "8"),
        (LOCAL_BACKEND, r"^iteration  8  mean reward \d\.\d{3}  best .*$"),
        reward_rose,
    ),
    "sampling.py": Proof(
        ("--num-samples", "3", "--max-tokens", "8", "--prompt", "Hi there"),
        (
            LOCAL_BACKEND,
            r"^the server serves: .*tinkex/tiny-llama.*$",
            r"^sample 3: .Hi there.*  \(\d+ tokens, stop: (stop|length), mean logprob -\S+\)$",
            r"^prompt logprobs \(8 tokens; the first has no context\):$",
        ),
        samples_and_prompt_logprobs,
    ),
    "supervised_daemon.py": Proof(
        ("--steps", "4", "--crash-after", "2"),
        (
            LOCAL_BACKEND,
            r"^injecting a fault into the trainer daemon$",
            r"^supervisor saw 'trainer' crash: RuntimeError\('injected fault .*'\)$",
            r"^finished 4/4 planned steps with incarnations #\d+, #\d+ of the daemon, .*$",
            r"^loss/token over the whole run: \d+\.\d+ -> \d+\.\d+$",
        ),
        daemon_finished_every_step_once,
    ),
    "train_local.py": Proof(
        ("--steps", "3"),
        (
            r"^local Tinker backend at http://127\.0\.0\.1:\d+ .*$",
            r"^step   3  loss/token .*$",
            r"^checkpoint: tinker://\S+$",
        ),
        trained_then_three_samples,
    ),
    "training_loop.py": Proof(
        ("--steps", "3", "--max-tokens", "8"),
        (
            LOCAL_BACKEND,
            r"^training a rank-32 LoRA adapter on tinkex/tiny-llama$",
            r"^step   3/3  loss/token \d+\.\d+  .*$",
            r"^sampler weights: tinker://\S+/sampler_weights/final$",
            r"^sample: 'The quick' -> .The quick.*$",
            r"^sample: 'Let it' -> .Let it.*$",
        ),
        loss_fell,
    ),
    "vision_input.py": Proof(
        ("--max-tokens", "8"),
        (
            LOCAL_BACKEND,
            r"^prompt chunks: encoded_text, image, encoded_text$",
            r"^server answer: HTTP 400 .* does not accept image input.*$",
            r"^\(expected: the local backend's model reads text only\)$",
        ),
    ),
}


def local_env() -> dict[str, str]:
    """This environment without the hosted-service settings, so the example runs locally,
    and without the suite's own settings, so it runs as a user's would (telemetry on).

    One torch thread per example keeps it from fighting the test process (and whoever else
    shares the machine) for cores; HF_HUB_OFFLINE makes any accidental download fail fast.
    """
    dropped = HOSTED_ENV + TEST_ONLY_ENV
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return env


def run_example(
    script: Path, args: tuple[str, ...], cwd: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``script`` as a user would (local backend, ``env`` added); its result and a report."""
    result = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=cwd,
        env={**local_env(), **env},
    )
    report = f"{script.name} {' '.join(args)}\n--- stdout\n{result.stdout}\n--- stderr\n"
    return result, report


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.glob("*.py")))
def test_example_runs_and_shows_its_point(name: str, tmp_path: Path) -> None:
    proof = PROOFS.get(name)
    assert proof is not None, (
        f"examples/{name} has no row in PROOFS (tests/test_examples.py): add the flags that "
        "keep it short and the output lines that prove it works"
    )
    pytest.importorskip("torch")  # the embedded backend needs the 'local' extra
    result, report = run_example(EXAMPLES / name, proof.args, tmp_path)
    assert result.returncode == 0, report + result.stderr
    for pattern in proof.lines:
        assert re.search(pattern, result.stdout, re.MULTILINE), f"no line /{pattern}/ in {report}"
    if proof.check is not None:
        try:
            proof.check(result.stdout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{report}") from exc


def test_every_proof_names_an_example() -> None:
    missing = sorted(name for name in PROOFS if not (EXAMPLES / name).is_file())
    assert not missing, f"PROOFS rows for examples that do not exist: {missing}"


def test_vision_example_reads_the_image_settings_from_the_environment(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    image = tmp_path / "photo.jpg"
    image.write_bytes(jpeg())
    args = ("--max-tokens", "4")
    env = {"TINKER_IMAGE_PATH": str(image), "TINKER_IMAGE_EXPECTED_TOKENS": "16"}
    result, report = run_example(EXAMPLES / "vision_input.py", args, tmp_path, **env)
    assert result.returncode == 0, report + result.stderr
    assert re.search(rf"^image: jpeg, 22 bytes from {re.escape(str(image))}$", result.stdout, re.M)
    # "Here is a picture:" (18 byte tokens), the image's 16, then " It shows" (9).
    assert re.search(r"^prompt length: 43 tokens$", result.stdout, re.M), report


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TINKER_IMAGE_EXPECTED_TOKENS": "-3"}, "TINKER_IMAGE_EXPECTED_TOKENS='-3' is not a"),
        ({"TINKER_IMAGE_PATH": "missing.png"}, "TINKER_IMAGE_PATH: .*No such file"),
        ({"TINKER_IMAGE_PATH": __file__}, "TINKER_IMAGE_PATH: .*not a valid image"),
    ],
)
def test_vision_example_refuses_bad_image_settings(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result, report = run_example(EXAMPLES / "vision_input.py", (), tmp_path, **env)
    assert result.returncode == 1, report + result.stderr
    assert re.fullmatch(f"{message}.*\n", result.stderr), report + result.stderr


def test_train_local_runs_on_the_official_sdk(tmp_path: Path) -> None:
    # Its docstring says swapping two imports makes it an official-SDK script: do that.
    pytest.importorskip("torch")
    pytest.importorskip("tinker")
    source = (EXAMPLES / "train_local.py").read_text(encoding="utf-8")
    swapped = source.replace("import tinkex as tinker\n", "import tinker\n").replace(
        "from tinkex import types\n", "from tinker import types\n"
    )
    assert swapped.count("import tinker\n") == 1 and "from tinker import types" in swapped
    script = tmp_path / "train_local_tinker.py"
    script.write_text(swapped, encoding="utf-8")
    result, report = run_example(script, ("--steps", "2"), tmp_path)
    assert result.returncode == 0, report + result.stderr
    trained_then_three_samples(result.stdout)


def test_an_example_talks_to_the_service_its_environment_names(
    base_url: str, tmp_path: Path
) -> None:
    # TINKER_BASE_URL / TINKER_API_KEY switch an example from the embedded backend to the
    # given service: here the suite's `tinkex serve`, which accepts only the suite's key.
    from tinkex import RestClient

    with RestClient(base_url=base_url, api_key=API_KEY) as rest:
        runs_before = rest.list_training_runs(limit=1).result().cursor.total_count
        result, report = run_example(
            EXAMPLES / "queue_state_telemetry.py",
            (),
            tmp_path,
            TINKER_BASE_URL=base_url,
            TINKER_API_KEY=API_KEY,
        )
        runs_after = rest.list_training_runs(limit=1).result().cursor.total_count
    assert result.returncode == 0, report + result.stderr
    assert "started the embedded" not in result.stdout + result.stderr, report
    for pattern in (
        r"^sample: .+$",
        r"^trained one step: loss:sum=\d+\.\d+$",
        r"^telemetry: [1-9]\d* events sent, 0 dropped$",
        r"^done: [1-9]\d* requests, \d+ queue-state transitions$",
    ):
        assert re.search(pattern, result.stdout, re.MULTILINE), f"no line /{pattern}/ in {report}"
    assert runs_after == runs_before + 1, f"the server saw {runs_after - runs_before} new runs"
