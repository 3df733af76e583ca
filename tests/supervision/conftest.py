from __future__ import annotations

from collections.abc import Iterator

import pytest

from tinkex import telemetry

from .helpers import SUPERVISOR_EVENTS, Baseline, Journal, Signals, assert_no_leaks


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Every test must leave no actor, no thread and no telemetry handler behind."""
    baseline = Baseline.now()
    yield
    assert_no_leaks(baseline)


@pytest.fixture
def signals() -> Iterator[Signals]:
    recorder = Signals()
    telemetry.attach_many("tests.supervision.signals", SUPERVISOR_EVENTS, recorder)
    yield recorder
    telemetry.detach("tests.supervision.signals")


@pytest.fixture
def journal() -> Journal:
    return Journal()
