"""Tokenizer files from the Hugging Face Hub, through ``huggingface_hub`` and its cache.

Downloads go through :func:`huggingface_hub.hf_hub_download`, so they land in (and are read
from) the standard Hub cache and use the standard credentials (``HF_TOKEN`` or a saved
login). One difference: ``huggingface_hub`` reads ``HF_HOME``, ``HF_HUB_CACHE``,
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once, when it is imported; this module reads them
again on every load, so a program (or a test) that sets them after ``import tinkex`` is
obeyed too. Offline mode means "use the cache only": no request is made at all.

Offline mode can be turned on later but never off: once ``huggingface_hub`` was imported with
it on, it refuses every request for the life of the process, whatever the environment says
now. :class:`HubSettings` records which of the two switched it on, so an error can say so.

Every failure becomes a :class:`~tinkex.errors.TokenizerError` that names the repo, the
file, the cache directory looked in, and how to get the file there without a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tinkex.errors import TokenizerError

__all__ = ["HubSettings", "hub_download", "hub_settings"]

_TRUE = frozenset({"1", "on", "yes", "true"})


@dataclass(frozen=True)
class HubSettings:
    """Where the Hub cache is, which Hub to ask, and whether the network may be used, as of now.

    ``offline_by`` says what put the process in offline mode: ``"environment"`` when
    ``HF_HUB_OFFLINE`` is set now, ``"import"`` when ``huggingface_hub`` was imported with
    offline mode on (it then stays offline whatever the environment says), ``None`` online.
    ``endpoint`` is ``HF_ENDPOINT`` as of now (``None``: ``huggingface_hub``'s own).
    """

    cache_dir: Path
    offline_by: Literal["environment", "import"] | None = None
    endpoint: str | None = None

    @property
    def offline(self) -> bool:
        return self.offline_by is not None


def hub_settings(cache_dir: str | None = None) -> HubSettings:
    """The cache directory (``cache_dir``, else ``HF_HUB_CACHE``, else ``HF_HOME``/hub, else
    ``huggingface_hub``'s default), the endpoint (``HF_ENDPOINT``) and offline mode
    (``HF_HUB_OFFLINE``, or ``huggingface_hub``'s own when it was imported offline), read
    now."""
    if cache_dir is None:
        if os.environ.get("HF_HUB_CACHE"):
            cache_dir = os.environ["HF_HUB_CACHE"]
        elif os.environ.get("HF_HOME"):
            cache_dir = os.path.join(os.environ["HF_HOME"], "hub")
        else:
            cache_dir = constants.HF_HUB_CACHE
    offline_by: Literal["environment", "import"] | None = None
    if constants.HF_HUB_OFFLINE:
        offline_by = "import"  # huggingface_hub will refuse every request: say so, not "online"
    elif os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        offline_by = "environment"
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None
    return HubSettings(Path(cache_dir).expanduser(), offline_by, endpoint)


def hub_download(
    repo_id: str,
    filenames: tuple[str, ...],
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_hint: str,
) -> tuple[Path, ...]:
    """The local paths of ``filenames`` of ``repo_id`` at ``revision``, downloaded if needed.

    ``local_hint`` tells, in the error, how to pass these files from disk instead.
    """
    settings = hub_settings(cache_dir)
    paths: list[Path] = []
    for filename in filenames:
        try:
            path = hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=settings.cache_dir,
                local_files_only=settings.offline,
                endpoint=settings.endpoint,
            )
        except Exception as exc:
            problem = _problem(exc, repo_id, filename, revision, settings)
            at = f"{repo_id}@{revision}" if revision else repo_id
            fetch = " ".join(["hf download", repo_id, *filenames])
            if revision:
                fetch += f" --revision {revision}"
            advice = (
                f"To work offline, {local_hint}; or fill the Hugging Face cache on a connected "
                f"machine (`{fetch}`) and point HF_HUB_CACHE (or HF_HOME) at a copy of it"
            )
            if settings.offline_by == "environment":
                advice += "; or unset HF_HUB_OFFLINE to let tinkex download it"
            elif settings.offline_by == "import":
                advice += (
                    "; or start the program without HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) "
                    "to let tinkex download it"
                )
            raise TokenizerError(
                f"cannot load tokenizer {at}: {problem} (looked in the Hugging Face cache at "
                f"{settings.cache_dir}). {advice}.",
                tokenizer_id=repo_id,
            ) from exc
        paths.append(Path(str(path)))
    return tuple(paths)


def _problem(
    exc: Exception, repo_id: str, filename: str, revision: str | None, settings: HubSettings
) -> str:
    if isinstance(exc, LocalEntryNotFoundError):
        if settings.offline_by == "environment":
            return f"{filename} is not cached, and HF_HUB_OFFLINE is set, so it was not downloaded"
        if settings.offline_by == "import":
            return (
                f"{filename} is not cached, and huggingface_hub is in offline mode, so it was "
                "not downloaded: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) was on when "
                "huggingface_hub was imported, and it reads them only then, so unsetting "
                "them later has no effect"
            )
        return f"{filename} is not cached, and the Hugging Face Hub could not be reached"
    if isinstance(exc, GatedRepoError):
        return (
            f"{repo_id} is gated on the Hugging Face Hub: request access to it, then set "
            "HF_TOKEN to a token of that account"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"{repo_id} is not a repository on the Hugging Face Hub, or it is private (set "
            "HF_TOKEN to a token that can read it)"
        )
    if isinstance(exc, RevisionNotFoundError):
        return f"{repo_id} has no revision {revision!r} on the Hugging Face Hub"
    if isinstance(exc, EntryNotFoundError):
        return f"{repo_id} has no {filename} on the Hugging Face Hub"
    if isinstance(exc, HfHubHTTPError) and exc.response.status_code == 401:
        return (
            "the Hugging Face Hub refused the credentials sent (HTTP 401): the token in "
            "HF_TOKEN (or of the saved login) is invalid or expired; set HF_TOKEN to a valid "
            f"token that can read {repo_id}"
        )
    if isinstance(exc, HFValidationError):
        return f"{repo_id!r} is neither a Hugging Face repo id ('org/name') nor an existing path"
    return f"could not get {filename} ({type(exc).__name__}: {_first_line(exc)})"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "no detail"
