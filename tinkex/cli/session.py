"""``tinkex session list`` / ``session info``: the sessions your clients opened."""

from __future__ import annotations

import click

from tinkex.clients.rest import AccessScope

from .options import Remote, access_scope_option, remote_options
from .output import echo_json, echo_pairs, echo_table
from .pages import collect, page_options

__all__ = ["session"]


@click.group()
def session() -> None:
    """List and inspect sessions (one per client process or ServiceClient)."""


@session.command("list")
@page_options
@remote_options
def list_sessions(remote: Remote, limit: int, offset: int) -> None:
    """List session ids."""
    with remote.connect() as service:
        rest = service.create_rest_client()
        page = collect(
            rest.list_sessions,
            lambda answer: (answer.sessions, None),
            limit=limit,
            offset=offset,
            deadline=remote.deadline,
            what="the list of sessions",
        )
    if remote.as_json:
        echo_json({"sessions": page.items, "shown": len(page.items)})
    else:
        echo_table(["SESSION ID"], [(session_id,) for session_id in page.items])


@session.command("info")
@click.argument("session_id")
@access_scope_option
@remote_options
def session_info(remote: Remote, session_id: str, access_scope: AccessScope) -> None:
    """Show the training runs and samplers a session created."""
    with remote.connect() as service:
        rest = service.create_rest_client()
        answer = remote.deadline.wait(
            rest.get_session(session_id, access_scope), f"the session {session_id}"
        )
    if remote.as_json:
        echo_json({"session_id": session_id, **answer.model_dump(mode="json")})
        return
    echo_pairs(
        [
            ("session id", session_id),
            ("display name", answer.display_name),
            ("training runs", ", ".join(answer.training_run_ids) or None),
            ("samplers", ", ".join(answer.sampler_ids) or None),
            ("metadata", answer.user_metadata),
        ]
    )
