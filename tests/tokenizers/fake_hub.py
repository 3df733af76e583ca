"""A Hugging Face Hub on 127.0.0.1 that serves files of model repos, as ``huggingface_hub`` asks.

``hf_hub_download`` first sends ``HEAD /{repo}/resolve/{revision}/{file}`` and reads the
commit (``X-Repo-Commit``), the ETag and the size from the answer, then ``GET``s the same URL
and stores the file as ``blobs/<etag>`` with ``snapshots/<commit>/<file>`` pointing at it and
``refs/<revision>`` holding the commit. This server answers both, records every request with
its ``Authorization`` header, and can refuse with the answers the real Hub gives: 401 for
bad credentials, 401 ``RepoNotFound`` for a repo the caller may not see.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

COMMIT = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")

Refusal = Literal["bad-credentials", "repo-not-found"]


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    authorization: str | None


@dataclass
class FakeHub:
    """Files by ``(repo, filename)``; ``refuse`` makes every answer that refusal."""

    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    refuse: Refusal | None = None
    seen: list[SeenRequest] = field(default_factory=list)
    url: str = ""

    @staticmethod
    def etag(body: bytes) -> str:
        return hashlib.sha256(body).hexdigest()


@contextmanager
def running(hub: FakeHub) -> Iterator[FakeHub]:
    """``hub`` served on a free port of 127.0.0.1 (``hub.url``) until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self._answer(with_body=False)

        def do_GET(self) -> None:
            self._answer(with_body=True)

        def _answer(self, *, with_body: bool) -> None:
            hub.seen.append(SeenRequest(self.command, self.path, self.headers["Authorization"]))
            match = _RESOLVE.match(self.path)
            body = hub.files.get((match["repo"], match["file"])) if match else None
            if hub.refuse == "bad-credentials":
                self._refuse(
                    401, {"X-Error-Message": "Invalid credentials in Authorization header"}
                )
            elif hub.refuse == "repo-not-found":
                self._refuse(401, {"X-Error-Code": "RepoNotFound"})
            elif body is None:
                self._refuse(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
            else:
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hub.etag(body)}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

        def _refuse(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the tests read hub.seen; keep pytest's output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-hf-hub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
