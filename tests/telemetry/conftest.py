from __future__ import annotations

from collections.abc import Iterator

import pytest

from tinkex import telemetry


@pytest.fixture(autouse=True)
def _no_leaked_handlers() -> Iterator[None]:
    before = {info.id for info in telemetry.list_handlers()}
    yield
    leaked = [info.id for info in telemetry.list_handlers() if info.id not in before]
    for handler_id in leaked:
        telemetry.detach(handler_id)
    assert not leaked, f"handlers left attached: {leaked}"
