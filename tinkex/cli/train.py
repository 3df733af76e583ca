"""``tinkex train``: supervised LoRA fine-tuning from a JSONL file, with checkpoints and samples.

With no options at all (and no API key or base URL set), it fine-tunes the built-in model of
the embedded local backend on the bundled dataset and prints what the trained model
answers to the dataset's first prompts.
"""

from __future__ import annotations

import datetime as dt
from importlib.resources import as_file, files
from pathlib import Path

import click

from tinkex.types.rest import ParsedTinkerPath

from .command_line import continue_command
from .dataset import Example, load_examples
from .errors import EXIT_INTERRUPTED, CommandError
from .interrupt import stop_requests
from .options import Remote, remote_options
from .output import echo_json
from .progress import StepProgress
from .run_dir import RunDirectory
from .trainer import BatchSchedule, Trainer, TrainOutcome, TrainPlan

__all__ = ["train"]

BUILTIN_MODEL = "tinkex/tiny-llama"
BUNDLED_DATA = "opposites.jsonl"
"""The dataset ``tinkex train`` uses without ``--data``: in ``tinkex/cli/data/``."""
DEFAULT_STEPS = 100
SAMPLE_PROMPTS_FROM_DATA = 3
OPENING_WORDS = 3
"""Data without prompts (``{"text"}`` rows) is sampled from the first words of its texts."""


@click.command()
@click.option(
    "--base-model",
    metavar="NAME",
    help=f"Model to fine-tune (default with the local backend: {BUILTIN_MODEL}).",
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL training data: prompt/completion, text or chat rows (default: the bundled "
    "dataset of opposites).",
)
@click.option(
    "--steps", type=click.IntRange(min=1), help=f"Steps to train  [default: {DEFAULT_STEPS}]"
)
@click.option(
    "--epochs", type=click.IntRange(min=1), help="Train this many passes over the data instead."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True
)
@click.option(
    "--rank", type=click.IntRange(min=1), default=32, show_default=True, help="LoRA rank."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seeds the LoRA init and the shuffle."
)
@click.option(
    "--save-every",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Save a training checkpoint every N steps (0: only at the end).",
)
@click.option(
    "--sample-prompt",
    "sample_prompts",
    multiple=True,
    metavar="TEXT",
    help="Sample from the trained model for this prompt at the end (repeatable; default: "
    f"the prompts of the first {SAMPLE_PROMPTS_FROM_DATA} examples that have one, or the "
    f"first {OPENING_WORDS} words of the first texts of data without prompts).",
)
@click.option("--sample-max-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for metrics.jsonl, checkpoints.json, samples.jsonl and loss.png "
    "(default: ./tinkex-runs/<date-time>).",
)
@click.option(
    "--resume",
    metavar="TINKER_PATH",
    help="Continue from a training checkpoint (weights and optimizer state) at its step.",
)
@click.option(
    "--tokenizer",
    "tokenizer_id",
    metavar="ID_OR_PATH",
    help="Tokenizer to use instead of the model's own (a Hugging Face id or a local path).",
)
@click.option(
    "--eos-token",
    metavar="TEXT",
    help="End-of-sequence token appended to every example (default: <|eos|> for the "
    "built-in byte tokenizer, none otherwise).",
)
@remote_options
@click.pass_context
def train(
    ctx: click.Context,
    remote: Remote,
    base_model: str | None,
    data: Path | None,
    steps: int | None,
    epochs: int | None,
    batch_size: int,
    learning_rate: float,
    rank: int,
    seed: int,
    save_every: int,
    sample_prompts: tuple[str, ...],
    sample_max_tokens: int,
    output: Path | None,
    resume: str | None,
    tokenizer_id: str | None,
    eos_token: str | None,
) -> None:
    """Fine-tune a LoRA adapter on a JSONL file, save checkpoints, and sample from it.

    Progress goes to stderr; the checkpoint paths and samples to stdout. Ctrl-C finishes
    the current step, saves a checkpoint and exits with status 130 (a second Ctrl-C quits
    at once, without saving).
    """
    if steps is not None and epochs is not None:
        raise click.UsageError("pass --steps or --epochs, not both")
    if resume and ctx.get_parameter_source("rank") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--rank cannot be combined with --resume: the checkpoint has one")
    if base_model is None and not resume:
        if not remote.uses_local_backend():
            raise click.UsageError(
                "Missing option '--base-model': name the model to fine-tune (the embedded "
                f"local backend defaults to {BUILTIN_MODEL})"
            )
        base_model = BUILTIN_MODEL
    if resume:
        _check_resume(resume)
    examples = _examples(data)
    schedule = BatchSchedule(len(examples), batch_size, seed)
    sample_prompts = sample_prompts or _prompts_of(examples)
    if not sample_prompts:
        click.echo(
            "tinkex: no sample prompts in the data (no prompts, and no text of two words or "
            "more), so no samples will be printed at the end; pass --sample-prompt TEXT",
            err=True,
        )
    run_dir = RunDirectory(output or _default_output())
    run_dir.prepare(resuming=resume is not None)
    plan = TrainPlan(
        examples=examples,
        base_model=base_model,
        steps=steps or (epochs * schedule.steps_per_epoch if epochs else DEFAULT_STEPS),
        batch_size=batch_size,
        learning_rate=learning_rate,
        rank=rank,
        seed=seed,
        save_every=save_every,
        sample_prompts=sample_prompts,
        sample_max_tokens=sample_max_tokens,
        output=run_dir,
        resume=resume,
        tokenizer_id=tokenizer_id,
        eos_token=eos_token,
    )
    progress = StepProgress(plan.steps)
    try:
        with remote.connect() as service, stop_requests() as stop:
            try:
                outcome = Trainer(plan, service, remote.deadline, progress).run(stop)
            finally:
                progress.end()
            if outcome.interrupted:
                service.close("interrupted", "Ctrl-C").result()
    except BaseException:
        run_dir.discard_if_unused()
        raise
    _report(outcome, run_dir, remote)
    if outcome.interrupted:
        click.echo(
            f"tinkex: interrupted after step {outcome.step}; continue with: "
            + continue_command(ctx, str(outcome.state_path), run_dir.path),
            err=True,
        )
        ctx.exit(EXIT_INTERRUPTED)


def _check_resume(path: str) -> None:
    """Refuse a ``--resume`` path that is malformed or holds no training state."""
    parsed = ParsedTinkerPath.parse(path)
    if parsed.checkpoint_type != "training":
        raise CommandError(
            f"--resume {path} holds {parsed.checkpoint_type} weights, without the optimizer "
            "state; resuming needs a training-state checkpoint, "
            f"tinker://{parsed.training_run_id}/weights/<name> (the state_path and "
            "checkpoints of the run's checkpoints.json)"
        )


def _examples(data: Path | None) -> list[Example]:
    if data is not None:
        return load_examples(data)
    with as_file(files(__package__).joinpath("data", BUNDLED_DATA)) as bundled:
        return load_examples(bundled)


def _prompts_of(examples: list[Example]) -> tuple[str, ...]:
    """The prompts of the first examples that have one; without any, the openings of the
    first texts (what a model trained on them should go on with)."""
    prompts = [e.prompt for e in examples if e.prompt is not None]
    if not prompts:
        prompts = [p for e in examples if (p := e.opening(OPENING_WORDS)) is not None]
    return tuple(prompts[:SAMPLE_PROMPTS_FROM_DATA])


def _default_output() -> Path:
    return Path("tinkex-runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _report(outcome: TrainOutcome, run_dir: RunDirectory, remote: Remote) -> None:
    if remote.as_json:
        echo_json({**outcome.summary(), "output": str(run_dir.path), "samples": outcome.samples})
        return
    if not outcome.interrupted:
        trained = outcome.step - outcome.first_step
        loss = (
            f": loss {outcome.first_loss:.4f} -> {outcome.last_loss:.4f}"
            if outcome.first_loss is not None and outcome.last_loss is not None
            else ""
        )
        click.echo(f"trained {outcome.base_model} for {trained} steps{loss}")
    click.echo(f"checkpoint: {outcome.state_path}")
    if outcome.sampler_path:
        click.echo(f"sampler weights: {outcome.sampler_path}")
    click.echo(f"outputs: {run_dir.path}")
    for sample in outcome.samples:
        click.echo(f"sample: {sample['prompt']!r} -> {sample['completion']!r}")
