"""Random trees and crash sequences, checked against a reference model of OTP's rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex import telemetry
from tinkex.supervision import (
    ChildSpec,
    MaxRestartsExceeded,
    Registry,
    Restart,
    Strategy,
    Supervisor,
)

from .helpers import SUPERVISOR_EVENTS, WAIT, Baseline, Signals, Worker, assert_no_leaks, ping


@dataclass
class ModelChild:
    id: str
    restart: Restart
    running: bool = True


@dataclass
class Model:
    """OTP's restart rules for one supervisor, as plainly as they can be written.

    ``log`` is what a supervisor does, in order: ``("start", id)`` and ``("exit", id)``.
    """

    children: list[ModelChild]
    strategy: Strategy
    max_restarts: int
    log: list[tuple[str, str]] = field(default_factory=list)
    restarts: int = 0
    gave_up: bool = False

    def __post_init__(self) -> None:
        self.log.extend(("start", child.id) for child in self.children)

    def exit(self, child_id: str, crashed: bool) -> None:
        index = next(i for i, c in enumerate(self.children) if c.id == child_id)
        child = self.children[index]
        self._stop(child)
        if not (
            child.restart is Restart.PERMANENT or (child.restart is Restart.TRANSIENT and crashed)
        ):
            if child.restart is Restart.TEMPORARY:
                self.children.remove(child)
            return
        self.restarts += 1  # all within the window: the test's window is an hour
        if self.restarts > self.max_restarts:
            self.gave_up = True
            for sibling in reversed(self.children):
                self._stop(sibling)
            return
        scope = {
            Strategy.ONE_FOR_ONE: [child],
            Strategy.ONE_FOR_ALL: list(self.children),
            Strategy.REST_FOR_ONE: self.children[index:],
        }[self.strategy]
        for sibling in reversed(scope):
            self._stop(sibling)
        for sibling in scope:
            if sibling.restart is Restart.TEMPORARY:
                self.children.remove(sibling)
            else:
                sibling.running = True
                self.log.append(("start", sibling.id))

    def _stop(self, child: ModelChild) -> None:
        if child.running:
            child.running = False
            self.log.append(("exit", child.id))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Model, list[tuple[int, bool]]]:
    restarts = draw(st.lists(st.sampled_from(list(Restart)), min_size=1, max_size=4))
    model = Model(
        [ModelChild(f"c{i}", restart) for i, restart in enumerate(restarts)],
        draw(st.sampled_from(list(Strategy))),
        draw(st.integers(min_value=0, max_value=3)),
    )
    events = draw(st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=8))
    return model, events


def actions(signals: Signals) -> list[tuple[str, str]]:
    kinds = {"tinkex.supervisor.child_started": "start", "tinkex.supervisor.child_exited": "exit"}
    return [(kinds[name], meta["child_id"]) for name, _, meta in signals.events if name in kinds]


@settings(max_examples=50, deadline=None)
@given(scenarios())
def test_the_supervisor_follows_the_model(scenario: tuple[Model, list[tuple[int, bool]]]) -> None:
    model, events = scenario
    baseline = Baseline.now()
    signals = Signals()
    telemetry.attach_many("tests.supervision.model", SUPERVISOR_EVENTS, signals)
    registry = Registry()
    specs = [ChildSpec(c.id, Worker, restart=c.restart) for c in model.children]
    sup = Supervisor.start(
        specs,
        strategy=model.strategy,
        max_restarts=model.max_restarts,
        max_seconds=3600,
        registry=registry,
    )
    try:
        for pick, crashed in events:
            running = [c for c in model.children if c.running]
            if not running:
                break
            target = running[pick % len(running)]
            ref = registry.lookup(target.id)
            generation = ping(ref)[1]

            ref.tell("crash" if crashed else "stop")
            signals.wait_for(
                "tinkex.supervisor.child_exited", child_id=target.id, generation=generation
            )
            model.exit(target.id, crashed)

            if model.gave_up:
                assert isinstance(sup.wait(WAIT).error, MaxRestartsExceeded)
            else:
                actual = sup.which_children()  # answered after the exit was fully handled
                assert [(c.id, c.ref is not None) for c in actual] == [
                    (c.id, c.running) for c in model.children
                ]
            assert actions(signals) == model.log
            if model.gave_up:
                break
    finally:
        sup.stop()
        telemetry.detach("tests.supervision.model")
    assert_no_leaks(baseline)
