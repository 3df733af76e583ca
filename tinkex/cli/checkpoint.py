"""``tinkex checkpoint``: save a fresh LoRA checkpoint; its subcommands manage checkpoints.

``tinkex checkpoint --base-model M --output FILE`` creates a LoRA training client on ``M``
and saves it right away (its initial adapter): the training state (``weights``, for
``--resume`` and ``create_training_client_from_state``), the sampler weights
(``sampler_weights``, for sampling), or both (the default, ``--kind both``). It writes
what it saved as JSON to ``FILE``. The subcommands (``list``, ``info``, ``publish``,
``unpublish``, ``set-ttl``, ``delete``, ``download``) work on existing checkpoints.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from tinkex.errors import NotFoundError
from tinkex.types.rest import MAX_TTL_SECONDS, MIN_TTL_SECONDS, Checkpoint, ParsedTinkerPath

from .errors import FAILURES, CommandError, describe
from .options import Remote, reject_group_options, remote_options
from .output import (
    echo_json,
    echo_pairs,
    echo_table,
    human_bytes,
    human_time,
    json_text,
    prepare_result_file,
    write_result_file,
)
from .pages import Page, collect, page_options

__all__ = ["checkpoint"]


@click.group(
    invoke_without_command=True,
    subcommand_metavar="[list | info | publish | unpublish | set-ttl | delete | download] ...",
)
@click.option("--base-model", metavar="NAME", help="Base model of the LoRA adapter to save.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file to write the checkpoint's metadata to (required).",
)
@click.option("--name", help="Checkpoint name (default: checkpoint-<UTC date-time>).")
@click.option(
    "--kind",
    type=click.Choice(["state", "sampler", "both"]),
    default="both",
    show_default=True,
    help="Save the training state, the sampler weights, or both.",
)
@click.option("--rank", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seed", type=int, help="Seed of the adapter's initialisation.")
@click.option("--train-mlp/--no-train-mlp", default=True, show_default=True)
@click.option("--train-attn/--no-train-attn", default=True, show_default=True)
@click.option("--train-unembed/--no-train-unembed", default=True, show_default=True)
@remote_options
@click.pass_context
def checkpoint(
    ctx: click.Context,
    remote: Remote,
    base_model: str | None,
    output: Path | None,
    name: str | None,
    kind: str,
    rank: int,
    seed: int | None,
    train_mlp: bool,
    train_attn: bool,
    train_unembed: bool,
) -> None:
    """Save a new LoRA checkpoint of a base model, or manage checkpoints (subcommands).

    Saving: tinkex checkpoint --base-model NAME --output FILE [--name N] [--kind both].
    """
    if ctx.invoked_subcommand is not None:
        reject_group_options(ctx, "checkpoint-saving")
        return
    if base_model is None:
        raise click.UsageError("Missing option '--base-model': name the model to checkpoint")
    if output is None:
        raise click.UsageError(
            "Missing option '--output': name the JSON file for the checkpoint's metadata"
        )
    prepare_result_file(output, "--output")
    name = name or f"checkpoint-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    lora: dict[str, Any] = {
        "rank": rank,
        "seed": seed,
        "train_mlp": train_mlp,
        "train_attn": train_attn,
        "train_unembed": train_unembed,
    }
    with remote.connect() as service:
        training = remote.deadline.wait(
            service.create_lora_training_client(base_model, **lora), f"a LoRA model of {base_model}"
        )
        state = training.save_state(name) if kind != "sampler" else None
        sampler = training.save_weights_for_sampler(name) if kind != "state" else None
        metadata: dict[str, Any] = {
            "base_model": base_model,
            "training_run_id": training.model_id,
            "name": name,
            "state_path": None
            if state is None
            else remote.deadline.wait(state, "the training state to be saved").path,
            "sampler_path": None
            if sampler is None
            else remote.deadline.wait(sampler, "the sampler weights to be saved").path,
            "lora": lora,
            "saved_at": dt.datetime.now(dt.UTC).isoformat(),
        }
    try:
        write_result_file(output, json_text(metadata) + "\n")
    except OSError as exc:
        saved = ", ".join(p for p in (metadata["state_path"], metadata["sampler_path"]) if p)
        raise CommandError(
            f"saved {saved}, but could not write its metadata to {output}: {describe(exc)}"
        ) from None
    if remote.as_json:
        echo_json(metadata)
        return
    for label, key in (("training state", "state_path"), ("sampler weights", "sampler_path")):
        if metadata[key]:
            click.echo(f"saved {label}: {metadata[key]}")
    click.echo(f"tinkex: metadata written to {output}", err=True)


# listing and inspecting -------------------------------------------------------------------


@checkpoint.command("list")
@click.option("--run-id", metavar="RUN_ID", help="Only this training run's checkpoints.")
@page_options
@remote_options
def list_checkpoints(remote: Remote, run_id: str | None, limit: int, offset: int) -> None:
    """List your checkpoints (all runs, or one run's)."""
    with remote.connect() as service:
        rest = service.create_rest_client()
        if run_id is not None:
            every = remote.deadline.wait(
                rest.list_checkpoints(run_id), f"the checkpoints of {run_id}"
            ).checkpoints
            end = None if limit == 0 else offset + limit
            page: Page[Checkpoint] = Page(every[offset:end], len(every))
        else:
            page = collect(
                rest.list_user_checkpoints,
                lambda answer: (
                    answer.checkpoints,
                    None if answer.cursor is None else answer.cursor.total_count,
                ),
                limit=limit,
                offset=offset,
                deadline=remote.deadline,
                what="the list of checkpoints",
            )
    if remote.as_json:
        shown = {"checkpoints": page.items, "total": page.total, "shown": len(page.items)}
        echo_json({**shown, "run_id": run_id} if run_id else shown)
        return
    echo_table(
        ["PATH", "TYPE", "SIZE", "PUBLIC", "CREATED", "EXPIRES"],
        [
            (
                c.tinker_path,
                c.checkpoint_type,
                human_bytes(c.size_bytes),
                c.public,
                human_time(c.time),
                human_time(c.expires_at) if c.expires_at else "never",
            )
            for c in page.items
        ],
    )
    total = "?" if page.total is None else page.total
    click.echo(f"{len(page.items)} of {total} checkpoint(s)", err=True)


@checkpoint.command("info")
@click.argument("tinker_path")
@remote_options
def info(remote: Remote, tinker_path: str) -> None:
    """Show one checkpoint: what it was trained as, its size, visibility and expiry."""
    parsed = ParsedTinkerPath.parse(tinker_path)
    with remote.connect() as service:
        rest = service.create_rest_client()
        weights = rest.get_weights_info_by_tinker_path(tinker_path)
        listing = rest.list_checkpoints(parsed.training_run_id)
        weights_info = remote.deadline.wait(weights, f"the weights info of {tinker_path}")
        try:
            entries = remote.deadline.wait(
                listing, f"the checkpoints of {parsed.training_run_id}"
            ).checkpoints
        except NotFoundError:  # a published checkpoint of another owner's run
            entries = []
    found = next((c for c in entries if c.tinker_path == tinker_path), None)
    if remote.as_json:
        echo_json({"tinker_path": tinker_path, "checkpoint": found, "weights_info": weights_info})
        return
    pairs: list[tuple[str, object]] = [
        ("path", tinker_path),
        ("type", parsed.checkpoint_type),
        ("base model", weights_info.base_model),
        ("lora", f"rank {weights_info.lora_rank}" if weights_info.is_lora else "full"),
        ("train mlp", weights_info.train_mlp),
        ("train attn", weights_info.train_attn),
        ("train unembed", weights_info.train_unembed),
    ]
    if found is not None:
        pairs += [
            ("size", human_bytes(found.size_bytes)),
            ("public", found.public),
            ("created", found.time),
            ("expires", found.expires_at or "never"),
            ("metadata", found.user_metadata),
        ]
    echo_pairs(pairs)


# changing ---------------------------------------------------------------------------------


@checkpoint.command("publish")
@click.argument("tinker_path")
@remote_options
def publish(remote: Remote, tinker_path: str) -> None:
    """Make a checkpoint readable by everyone on the service."""
    _set_public(remote, tinker_path, public=True)


@checkpoint.command("unpublish")
@click.argument("tinker_path")
@remote_options
def unpublish(remote: Remote, tinker_path: str) -> None:
    """Make a published checkpoint private again."""
    _set_public(remote, tinker_path, public=False)


def _set_public(remote: Remote, tinker_path: str, *, public: bool) -> None:
    with remote.connect() as service:
        rest = service.create_rest_client()
        change = (
            rest.publish_checkpoint_from_tinker_path
            if public
            else rest.unpublish_checkpoint_from_tinker_path
        )
        remote.deadline.wait(
            change(tinker_path), f"{'publishing' if public else 'unpublishing'} {tinker_path}"
        )
    if remote.as_json:
        echo_json({"tinker_path": tinker_path, "public": public})
    else:
        click.echo(f"{'published' if public else 'unpublished'} {tinker_path}")


@checkpoint.command("set-ttl")
@click.argument("tinker_path")
@click.option(
    "--ttl",
    type=click.IntRange(MIN_TTL_SECONDS, MAX_TTL_SECONDS),
    metavar="SECONDS",
    help=f"Expire this long from now: {MIN_TTL_SECONDS} (one hour) to {MAX_TTL_SECONDS} "
    "(ten years), the service's range.",
)
@click.option("--remove", is_flag=True, help="Never expire.")
@remote_options
def set_ttl(remote: Remote, tinker_path: str, ttl: int | None, remove: bool) -> None:
    """Set when a checkpoint expires (--ttl SECONDS), or make it permanent (--remove)."""
    if (ttl is None) == (not remove):
        raise click.UsageError("pass exactly one of --ttl SECONDS or --remove")
    with remote.connect() as service:
        rest = service.create_rest_client()
        remote.deadline.wait(
            rest.set_checkpoint_ttl_from_tinker_path(tinker_path, ttl),
            f"the new expiry of {tinker_path}",
        )
    if remote.as_json:
        echo_json({"tinker_path": tinker_path, "ttl_seconds": ttl})
    elif ttl is None:
        click.echo(f"{tinker_path} never expires")
    else:
        click.echo(f"{tinker_path} expires in {ttl} s")


@checkpoint.command("delete")
@click.argument("tinker_paths", nargs=-1, required=True, metavar="TINKER_PATH...")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@remote_options
def delete(remote: Remote, tinker_paths: tuple[str, ...], yes: bool) -> None:
    """Delete checkpoints (all paths are checked before any is deleted).

    Exits 1 if any deletion failed; declining the confirmation deletes nothing (exit 0).
    """
    for path in tinker_paths:
        ParsedTinkerPath.parse(path)
    if not yes:
        try:
            confirmed = click.confirm(
                f"Delete {len(tinker_paths)} checkpoint(s)? This cannot be undone",
                default=False,
                err=True,
            )
        except click.Abort:
            raise CommandError(
                "no answer to the confirmation, nothing deleted; pass --yes to delete without "
                "asking"
            ) from None
        if not confirmed:
            click.echo("nothing deleted", err=True)
            return
    deleted: list[str] = []
    failed: list[dict[str, str]] = []
    with remote.connect() as service:
        rest = service.create_rest_client()
        for path in tinker_paths:
            try:
                remote.deadline.wait(
                    rest.delete_checkpoint_from_tinker_path(path), f"deleting {path}"
                )
            except FAILURES as exc:  # reported with the others; the rest go on
                failed.append({"tinker_path": path, "error": describe(exc)})
                click.echo(f"failed to delete {path}: {describe(exc)}", err=True)
            else:
                deleted.append(path)
                if not remote.as_json:
                    click.echo(f"deleted {path}")
    if remote.as_json:
        echo_json({"deleted": deleted, "failed": failed})
    if failed:
        raise CommandError(f"{len(failed)} of {len(tinker_paths)} deletion(s) failed")


@checkpoint.command("download")
@click.argument("tinker_path")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory to download into (the files land in <output>/<run>_<kind>_<name>).",
)
@click.option("--force", is_flag=True, help="Replace an existing, non-empty target directory.")
@remote_options
def download(remote: Remote, tinker_path: str, output: Path, force: bool) -> None:
    """Download a checkpoint's files."""
    received = _Received()
    with remote.connect() as service:
        rest = service.create_rest_client()
        try:
            target = remote.deadline.wait(
                rest.download_checkpoint(tinker_path, output, force=force, progress=received),
                f"the download of {tinker_path}",
            )
        except FileExistsError as exc:
            raise CommandError(
                f"{exc} (on the command line: --force, or another --output)"
            ) from None
    if remote.as_json:
        echo_json({"tinker_path": tinker_path, "directory": str(target), "bytes": received.done})
    else:
        click.echo(str(target))
        click.echo(f"tinkex: downloaded {human_bytes(received.done)}", err=True)


class _Received:
    """Counts the bytes of a download (called on tinkex's I/O thread, so kept trivial)."""

    def __init__(self) -> None:
        self.done = 0

    def __call__(self, done: int, total: int | None) -> None:
        self.done = done
