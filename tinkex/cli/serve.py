"""``tinkex serve``: run the local Tinker-compatible server in the foreground."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from .errors import CommandError
from .options import LOG_LEVELS, default_data_dir


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: str(default_data_dir()),
    show_default="~/.tinkex/local",
    help="Where checkpoints and the metadata database live.",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Accept only this key (repeatable). Without any, every non-empty key is accepted.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME_OR_DIR",
    help="Serve this base model (repeatable): a built-in name, a Hugging Face-layout "
    "directory, or NAME=DIR. Default: the built-in tinkex/tiny-llama. The built-in "
    "tinkex/zero does no model compute (for benchmarking clients) and is served only when "
    "listed.",
)
@click.option("--faults", metavar="PROFILE", help="Fault profile: a JSON file or k=v,k=v.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Log messages (on stderr) from this level up; debug adds the access log.",
)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    api_keys: tuple[str, ...],
    models: tuple[str, ...],
    faults: str | None,
    log_level: str,
) -> None:
    """Serve the Tinker HTTP API on this machine, with a small real model."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from tinkex.local import LocalServer, ModelSource, ServerConfig
    from tinkex.local.faults import FaultProfile

    try:
        config = ServerConfig(
            host=host,
            port=port,
            data_dir=data_dir,
            api_keys=frozenset(api_keys),
            models=tuple(ModelSource.parse(spec) for spec in models),
            faults=FaultProfile.load(faults) if faults else FaultProfile(),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    server = LocalServer(config, access_log=log_level.lower() == "debug")
    names = ", ".join(m.name for m in config.models) or "tinkex/tiny-llama"
    auth = f"{len(api_keys)} configured key(s)" if api_keys else "any key (open mode)"
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}, not loopback", err=True)

    def announce(running: LocalServer) -> None:
        click.echo(f"tinkex serve: {running.url} models: {names}; accepting {auth}", err=True)

    try:
        server.serve_forever(on_ready=announce)
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it already handled by shutting down cleanly
    except OSError as exc:  # "cannot listen on HOST:PORT: Address already in use; ..."
        raise CommandError(str(exc)) from None
    click.echo("tinkex serve: stopped", err=True)
