"""The supervised fine-tuning loop behind ``tinkex train``, apart from its command line.

One step is one batch: ``forward_backward`` with cross-entropy, then ``optim_step`` with
AdamW at a constant learning rate. Batches follow a schedule fixed by the seed (each epoch
a fresh shuffle of the examples), so the batch of step ``n`` is the same in every
invocation and a resumed run picks up exactly where the checkpoint left off. Training-state
checkpoints carry their step in ``user_metadata`` (key :data:`STEP_KEY`), which is how
``--resume`` knows where that is.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tinkex.clients import SamplingClient, ServiceClient, TrainingClient
from tinkex.errors import NotFoundError
from tinkex.tokenizers import BYTE_TOKENIZER_ID, EOS_TOKEN, Tokenizer
from tinkex.types import AdamParams, Datum, ModelInput, SamplingParams
from tinkex.types.rest import CheckpointsListResponse, ParsedTinkerPath

from .dataset import Example, render
from .deadline import Deadline
from .progress import StepProgress
from .run_dir import RunDirectory

__all__ = ["STEP_KEY", "BatchSchedule", "TrainOutcome", "TrainPlan", "Trainer"]

STEP_KEY: Final = "tinkex_train_step"
"""The ``user_metadata`` key of a checkpoint that records the step it was saved after."""


class BatchSchedule:
    """Which examples make up the batch of each step (1-based), the same in every run.

    Each epoch is a shuffle of all examples (seeded by ``seed`` and the epoch), cut into
    batches of ``batch_size``; the last batch of an epoch may be smaller.
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = math.ceil(size / batch_size)
        self._epoch = -1
        self._order: list[int] = []

    def indices(self, step: int) -> list[int]:
        epoch, position = divmod(step - 1, self.steps_per_epoch)
        if epoch != self._epoch:
            self._order = list(range(self.size))
            random.Random(f"{self.seed}:{epoch}").shuffle(self._order)
            self._epoch = epoch
        start = position * self.batch_size
        return self._order[start : start + self.batch_size]


@dataclass(frozen=True)
class TrainPlan:
    """Everything ``tinkex train`` was asked to do, checked."""

    examples: Sequence[Example]
    base_model: str | None
    steps: int
    batch_size: int
    learning_rate: float
    rank: int
    seed: int
    save_every: int
    sample_prompts: Sequence[str]
    sample_max_tokens: int
    output: RunDirectory
    resume: str | None = None
    tokenizer_id: str | None = None
    eos_token: str | None = None


@dataclass
class TrainOutcome:
    """What a run did; its :meth:`summary` is ``checkpoints.json`` and the JSON output."""

    base_model: str | None
    training_run_id: str
    first_step: int
    step: int
    interrupted: bool
    resumed_from: str | None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    state_path: str | None = None
    sampler_path: str | None = None
    first_loss: float | None = None
    last_loss: float | None = None
    samples: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "base_model": self.base_model,
            "training_run_id": self.training_run_id,
            "step": self.step,
            "interrupted": self.interrupted,
            "resumed_from": self.resumed_from,
            "state_path": self.state_path,
            "sampler_path": self.sampler_path,
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
            "checkpoints": self.checkpoints,
        }


class Trainer:
    """Runs one :class:`TrainPlan` against one service, reporting on ``progress``."""

    def __init__(
        self,
        plan: TrainPlan,
        service: ServiceClient,
        deadline: Deadline,
        progress: StepProgress,
    ) -> None:
        self.plan = plan
        self.service = service
        self.deadline = deadline
        self.progress = progress

    def run(self, stop: threading.Event) -> TrainOutcome:
        """Train until the last step, or until ``stop`` is set (then save and return)."""
        plan = self.plan
        saved_step = self._saved_step(plan.resume) if plan.resume else 0
        if saved_step is not None and saved_step >= plan.steps:
            raise ValueError(
                f"{plan.resume} was saved after step {saved_step}, and --steps is {plan.steps}: "
                f"nothing left to train; pass --steps above {saved_step}"
            )
        training = self._training_client()
        if saved_step is None:  # said only now: a checkpoint that failed to load has no step
            self.progress.note(
                f"tinkex: cannot tell which step {plan.resume} was saved after (its metadata "
                f"has no {STEP_KEY}: it was not saved by tinkex train); counting steps from 0"
            )
        start = saved_step or 0
        tokenizer = training.get_tokenizer(
            **({"tokenizer_id": plan.tokenizer_id} if plan.tokenizer_id else {})
        )
        eos = self._eos_ids(tokenizer)
        datums = [render(example, tokenizer, eos) for example in plan.examples]
        outcome = TrainOutcome(
            base_model=training.base_model,
            training_run_id=training.model_id,
            first_step=start,
            step=start,
            interrupted=False,
            resumed_from=plan.resume,
            checkpoints=plan.output.rewind(start) if plan.resume else [],
        )
        self._steps(training, datums, outcome, stop)
        outcome.interrupted = outcome.step < plan.steps
        last_saved = outcome.checkpoints[-1] if outcome.checkpoints else None
        if last_saved is not None and last_saved.get("step") == outcome.step:
            outcome.state_path = str(last_saved["path"])
        else:
            outcome.state_path = self._save_state(training, outcome)
        if not outcome.interrupted:
            outcome.sampler_path = self._save_sampler(training, outcome.step)
            plan.output.write_checkpoints(outcome.summary())  # before sampling, which may fail
            outcome.samples = self._samples(outcome.sampler_path, tokenizer)
            plan.output.write_samples(outcome.samples)
        plan.output.write_checkpoints(outcome.summary())
        plan.output.plot_loss()
        return outcome

    # setup ------------------------------------------------------------------------------

    def _training_client(self) -> TrainingClient:
        plan = self.plan
        if plan.resume:
            future = self.service.create_training_client_from_state_with_optimizer(
                plan.resume, base_model=plan.base_model
            )
            what = f"the checkpoint {plan.resume} to be loaded"
        else:
            assert plan.base_model is not None, "train.py requires a base model without resume"
            future = self.service.create_lora_training_client(
                plan.base_model, rank=plan.rank, seed=plan.seed
            )
            what = f"a LoRA model of {plan.base_model}"
        return self.deadline.wait(future, what)

    def _saved_step(self, path: str) -> int | None:
        """The step the checkpoint at ``path`` was saved after (its ``user_metadata``), or
        ``None`` when the server lists no such step (a checkpoint of another owner's run, of
        another tool, or none at all: loading it will tell)."""
        run_id = ParsedTinkerPath.parse(path).training_run_id
        rest = self.service.create_rest_client()
        try:
            listing = self.deadline.wait(
                rest.list_checkpoints(run_id), f"the checkpoints of {run_id}"
            )
        except NotFoundError:  # a published checkpoint of another owner's run, or no run
            listing = CheckpointsListResponse(checkpoints=[])
        for checkpoint in listing.checkpoints:
            if checkpoint.tinker_path == path:
                step = str((checkpoint.user_metadata or {}).get(STEP_KEY, ""))
                if step.isdigit():
                    return int(step)
        return None

    def _eos_ids(self, tokenizer: Tokenizer) -> list[int]:
        text = self.plan.eos_token
        if text is None:
            if tokenizer.tokenizer_id != BYTE_TOKENIZER_ID:
                self.progress.note(
                    f"tinkex: examples end without an end-of-sequence token (tinkex does not "
                    f"know the one of {tokenizer.tokenizer_id}); name it with --eos-token"
                )
                return []
            text = EOS_TOKEN
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(
                f"--eos-token {text!r} is {len(ids)} tokens for {tokenizer.tokenizer_id}, not "
                "one; pass the text of the model's single end-of-sequence token"
            )
        return ids

    # the loop ---------------------------------------------------------------------------

    def _steps(
        self,
        training: TrainingClient,
        datums: Sequence[Datum],
        outcome: TrainOutcome,
        stop: threading.Event,
    ) -> None:
        plan = self.plan
        schedule = BatchSchedule(len(datums), plan.batch_size, plan.seed)
        adam = AdamParams(learning_rate=plan.learning_rate)
        sizes = [
            (datum.model_input.length, float(datum.loss_fn_inputs["weights"].to_numpy().sum()))
            for datum in datums
        ]
        started = time.monotonic()
        seen_tokens = 0
        for step in range(outcome.step + 1, plan.steps + 1):
            if stop.is_set():
                return
            chosen = schedule.indices(step)
            fwdbwd = training.forward_backward([datums[i] for i in chosen], "cross_entropy")
            optim = training.optim_step(adam)
            output = self.deadline.wait(fwdbwd, f"forward_backward of step {step}")
            optim_metrics = self.deadline.wait(optim, f"optim_step of step {step}").metrics or {}
            tokens = sum(sizes[i][0] for i in chosen)
            trained = sum(sizes[i][1] for i in chosen)
            loss = output.metrics["loss:sum"] / max(trained, 1.0)
            seen_tokens += tokens
            elapsed = time.monotonic() - started
            plan.output.append_metrics(
                {
                    "step": step,
                    "epoch": round(step / schedule.steps_per_epoch, 4),
                    "loss": loss,
                    "tokens": tokens,
                    "trained_tokens": trained,
                    "tokens_per_second": seen_tokens / elapsed,
                    "learning_rate": plan.learning_rate,
                    "elapsed_seconds": elapsed,
                    **output.metrics,
                    **optim_metrics,
                }
            )
            self.progress.step(step, loss, seen_tokens / elapsed)
            outcome.step = step
            outcome.last_loss = loss
            if outcome.first_loss is None:
                outcome.first_loss = loss
            if plan.save_every and step % plan.save_every == 0 and step < plan.steps:
                self._save_state(training, outcome)
                plan.output.write_checkpoints(outcome.summary())

    # saving and sampling ----------------------------------------------------------------

    def _save_state(self, training: TrainingClient, outcome: TrainOutcome) -> str:
        step = outcome.step
        saved = self.deadline.wait(
            training.save_state(_name(step), user_metadata={STEP_KEY: str(step)}),
            f"the checkpoint of step {step} to be saved",
        )
        outcome.checkpoints.append({"step": step, "path": saved.path})
        return saved.path

    def _save_sampler(self, training: TrainingClient, step: int) -> str:
        saved = self.deadline.wait(
            training.save_weights_for_sampler(_name(step)),
            f"the sampler weights of step {step} to be saved",
        )
        if saved.path is None:
            raise ValueError("the server saved the sampler weights but returned no path")
        return saved.path

    def _samples(self, sampler_path: str, tokenizer: Tokenizer) -> list[dict[str, str]]:
        prompts = self.plan.sample_prompts
        if not prompts:
            return []
        sampler: SamplingClient = self.deadline.wait(
            self.service.create_sampling_client(model_path=sampler_path),
            f"a sampler of {sampler_path}",
        )
        params = SamplingParams(max_tokens=self.plan.sample_max_tokens, temperature=0.0)
        futures = [
            sampler.sample(ModelInput.from_ints(tokenizer.encode(prompt)), 1, params)
            for prompt in prompts
        ]
        samples = []
        for prompt, future in zip(prompts, futures, strict=True):
            tokens = self.deadline.wait(future, f"the sample for {prompt!r}").sequences[0].tokens
            completion = tokenizer.decode(tokens, skip_special_tokens=True)
            samples.append({"prompt": prompt, "completion": completion})
        return samples


def _name(step: int) -> str:
    return f"step-{step:06d}"
