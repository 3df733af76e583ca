"""``tinkex run``: sample from a model; ``tinkex run list`` / ``run info``: training runs.

``run`` is both a command and a group. Without a subcommand it samples (``tinkex run
--base-model M --prompt TEXT``); with one it manages training runs (``tinkex run list``).
Sampling options given together with a subcommand are refused rather than ignored.
"""

from __future__ import annotations

from pathlib import Path

import click

from tinkex.clients.rest import AccessScope
from tinkex.types import SamplingParams

from .options import Remote, access_scope_option, reject_group_options, remote_options
from .output import (
    echo_json,
    echo_pairs,
    echo_table,
    human_time,
    prepare_result_file,
    write_result_file,
)
from .pages import collect, page_options
from .prompt_file import read_prompt_file
from .sample import SampleJob, render_json, render_text

__all__ = ["run"]


@click.group(
    invoke_without_command=True,
    subcommand_metavar="[list | info RUN_ID]",
)
@click.option("--base-model", metavar="NAME", help="Sample from this base model...")
@click.option("--model-path", metavar="TINKER_PATH", help="...or from these trained weights.")
@click.option("--prompt", metavar="TEXT", help="The prompt text...")
@click.option(
    "--prompt-file",
    type=click.Path(path_type=Path),
    help="...or a file holding it: plain text, or a JSON array of token ids.",
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="0 samples greedily.",
)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True)
@click.option(
    "--top-k", type=click.IntRange(min=-1), default=-1, show_default=True, help="-1: no limit."
)
@click.option("--seed", type=int, help="Seed for reproducible samples.")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--stop",
    multiple=True,
    metavar="TEXT",
    help="Stop at this text (repeatable; default: at the end-of-sequence token).",
)
@click.option("--prompt-logprobs", is_flag=True, help="Also return each prompt token's logprob.")
@click.option(
    "--topk-prompt-logprobs",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Also return the N likeliest tokens at each prompt position.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result to this file instead of stdout.",
)
@click.option(
    "--tokenizer",
    "tokenizer_id",
    metavar="ID_OR_PATH",
    help="Tokenizer to use instead of the model's own (a Hugging Face id or a local path).",
)
@remote_options
@click.pass_context
def run(
    ctx: click.Context,
    remote: Remote,
    base_model: str | None,
    model_path: str | None,
    prompt: str | None,
    prompt_file: Path | None,
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    seed: int | None,
    num_samples: int,
    stop: tuple[str, ...],
    prompt_logprobs: bool,
    topk_prompt_logprobs: int,
    output: Path | None,
    tokenizer_id: str | None,
) -> None:
    """Sample from a base model or trained weights; or `run list` / `run info RUN_ID`.

    Exactly one of --base-model / --model-path and one of --prompt / --prompt-file. The
    samples go to stdout (or --output); with --json the server's answer as JSON, nothing else.
    """
    if ctx.invoked_subcommand is not None:
        reject_group_options(ctx, "sampling")
        return
    if (base_model is None) == (model_path is None):
        raise click.UsageError(
            "Missing option '--base-model' or '--model-path': name what to sample from "
            "(exactly one of them)"
            if base_model is None
            else "pass --base-model or --model-path, not both"
        )
    if (prompt is None) == (prompt_file is None):
        raise click.UsageError(
            "Missing option '--prompt' or '--prompt-file': give the prompt (exactly one)"
            if prompt is None
            else "pass --prompt or --prompt-file, not both"
        )
    if output is not None:
        prepare_result_file(output, "--output")
    job = SampleJob(
        base_model=base_model,
        model_path=model_path,
        prompt=read_prompt_file(prompt_file) if prompt_file is not None else str(prompt),
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=list(stop) or None,
        ),
        num_samples=num_samples,
        prompt_logprobs=prompt_logprobs,
        topk_prompt_logprobs=topk_prompt_logprobs,
        tokenizer_id=tokenizer_id,
    )
    with remote.connect() as service:
        sampled = job.run(service, remote.deadline)
        text = (
            render_json(sampled.response)
            if remote.as_json
            else render_text(sampled.response, sampled.prompt, job.tokenizer(sampled.sampler))
        )
    if output is None:
        click.echo(text, nl=False)
    else:
        write_result_file(output, text)
        count = len(sampled.response.sequences)
        click.echo(f"tinkex: wrote {count} sample(s) to {output}", err=True)


@run.command("list")
@page_options
@access_scope_option
@remote_options
def list_runs(remote: Remote, limit: int, offset: int, access_scope: AccessScope) -> None:
    """List training runs."""
    with remote.connect() as service:
        rest = service.create_rest_client()
        page = collect(
            lambda n, at: rest.list_training_runs(n, at, access_scope),
            lambda answer: (answer.training_runs, answer.cursor.total_count),
            limit=limit,
            offset=offset,
            deadline=remote.deadline,
            what="the list of training runs",
        )
    if remote.as_json:
        echo_json({"training_runs": page.items, "total": page.total, "shown": len(page.items)})
        return
    echo_table(
        ["RUN ID", "BASE MODEL", "OWNER", "LORA", "STATUS", "LAST REQUEST"],
        [
            (
                r.training_run_id,
                r.base_model,
                r.model_owner,
                f"rank {r.lora_rank}" if r.is_lora else "full",
                "corrupted" if r.corrupted else "ok",
                human_time(r.last_request_time),
            )
            for r in page.items
        ],
    )
    click.echo(f"{len(page.items)} of {page.total} run(s)", err=True)


@run.command("info")
@click.argument("run_id")
@access_scope_option
@remote_options
def run_info(remote: Remote, run_id: str, access_scope: AccessScope) -> None:
    """Show one training run."""
    with remote.connect() as service:
        rest = service.create_rest_client()
        training_run = remote.deadline.wait(
            rest.get_training_run(run_id, access_scope), f"the training run {run_id}"
        )
    if remote.as_json:
        echo_json(training_run)
        return
    last = training_run.last_checkpoint
    last_sampler = training_run.last_sampler_checkpoint
    echo_pairs(
        [
            ("run id", training_run.training_run_id),
            ("base model", training_run.base_model),
            ("owner", training_run.model_owner),
            ("lora", f"rank {training_run.lora_rank}" if training_run.is_lora else "full"),
            ("status", "corrupted" if training_run.corrupted else "ok"),
            ("last request", training_run.last_request_time),
            ("last checkpoint", last.tinker_path if last else None),
            ("last sampler checkpoint", last_sampler.tinker_path if last_sampler else None),
            ("metadata", training_run.user_metadata),
        ]
    )
