"""SupervisedActor: one exit report per incarnation, whatever the cause."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pykka
import pytest

from tinkex.supervision import Crash, ExitKind, ExitReason, Store, SupervisedActor
from tinkex.supervision.supervised_actor import Incarnation, Shutdown, launching

from .helpers import WAIT, Journal, Worker, join_new_threads, ping


class Reports:
    """The ``on_exit`` of a hand-made incarnation: what a supervisor would receive."""

    def __init__(self) -> None:
        self.reasons: list[ExitReason] = []
        self.arrived = threading.Event()

    def __call__(self, reason: ExitReason) -> None:
        self.reasons.append(reason)
        self.arrived.set()


def start_reporting(**worker_kwargs: object) -> tuple[pykka.ActorRef[Worker], Reports, Incarnation]:
    reports = Reports()
    incarnation = Incarnation("w", 7, Store(), reports)
    token = launching.set(incarnation)
    try:
        ref = Worker.start(**worker_kwargs)
    finally:
        launching.reset(token)
    return ref, reports, incarnation


def _tell(message: str) -> Callable[[pykka.ActorRef[Worker]], None]:
    return lambda ref: ref.tell(message)


def _ask_expecting(
    message: str, error: type[Exception]
) -> Callable[[pykka.ActorRef[Worker]], None]:
    def ask(ref: pykka.ActorRef[Worker]) -> None:
        with pytest.raises(error):
            ref.ask(message, timeout=WAIT)

    return ask


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        pytest.param(lambda ref: ref.stop(timeout=WAIT), ExitKind.NORMAL, id="stopped"),
        pytest.param(_tell("stop"), ExitKind.NORMAL, id="stopped-itself"),
        pytest.param(
            lambda ref: ref.ask(Shutdown(), timeout=WAIT),
            ExitKind.SHUTDOWN,
            id="shut-down",
        ),
        pytest.param(_tell("crash"), ExitKind.CRASH, id="exception-in-tell"),
        pytest.param(_ask_expecting("let-it-crash", Crash), ExitKind.CRASH, id="crash-in-ask"),
        pytest.param(_tell("exit"), ExitKind.CRASH, id="system-exit-in-tell"),
        pytest.param(_ask_expecting("exit", Crash), ExitKind.CRASH, id="system-exit-in-ask"),
    ],
)
def test_each_exit_is_reported_exactly_once(
    cause: Callable[[pykka.ActorRef[Worker]], None], kind: ExitKind
) -> None:
    before = threading.enumerate()
    journal = Journal()
    ref, reports, _ = start_reporting(journal=journal)
    assert ping(ref) == ("w", 7)

    cause(ref)

    assert reports.arrived.wait(WAIT)
    assert join_new_threads(before) == []
    assert [reason.kind for reason in reports.reasons] == [kind]
    assert journal.ids("terminate") == ["w"]
    assert not ref.is_alive()


@pytest.mark.parametrize("error", [ValueError, SystemExit], ids=["exception", "system-exit"])
def test_init_failure_fails_the_handshake_and_is_reported_once(error: type[BaseException]) -> None:
    before = threading.enumerate()

    def fail() -> bool:
        raise error("no")

    ref, reports, incarnation = start_reporting(fail_init=fail)

    with pytest.raises(Exception) as caught:
        incarnation.started.result(WAIT)
    assert join_new_threads(before) == []
    assert isinstance(caught.value if error is ValueError else caught.value.__cause__, error)
    assert [reason.kind for reason in reports.reasons] == [ExitKind.CRASH]
    assert not ref.is_alive()
    assert ref not in pykka.ActorRegistry.get_all()


def test_an_ask_exception_goes_to_the_caller_and_the_actor_lives_on() -> None:
    ref, reports, _ = start_reporting()

    with pytest.raises(ValueError, match="bad request"):
        ref.ask("fail", timeout=WAIT)

    assert ping(ref) == ("w", 7)
    assert reports.reasons == []
    ref.stop(timeout=WAIT)


def test_the_report_is_sent_before_the_caller_hears_of_the_crash() -> None:
    ref, reports, _ = start_reporting()

    with pytest.raises(Crash):
        ref.ask("let-it-crash", timeout=WAIT)

    assert len(reports.reasons) == 1  # no wait: it was already there


def test_system_exit_in_one_actor_leaves_the_others_running() -> None:
    bystander = Worker.start()
    victim = Worker.start()

    with pytest.raises(Crash) as caught:
        victim.ask("exit", timeout=WAIT)

    assert isinstance(caught.value.__cause__, SystemExit)
    assert ping(bystander)[0] == "Worker"
    registered = pykka.ActorRegistry.get_all()
    assert bystander in registered
    assert victim not in registered
    bystander.stop(timeout=WAIT)


def test_terminate_receives_the_exit_reason() -> None:
    seen: list[ExitReason] = []
    ref, reports, _ = start_reporting(on_terminate=seen.append)

    ref.tell("crash")

    assert reports.arrived.wait(WAIT)
    assert seen == reports.reasons
    assert isinstance(seen[0].error, RuntimeError)
    assert seen[0].abnormal


@pytest.mark.parametrize("error", [OSError, SystemExit], ids=["exception", "system-exit"])
def test_a_terminate_that_raises_turns_a_normal_exit_into_a_crash(
    error: type[BaseException],
) -> None:
    def explode(_reason: ExitReason) -> None:
        raise error("disk gone")

    ref, reports, _ = start_reporting(on_terminate=explode)

    assert ref.stop(timeout=WAIT) is True

    assert reports.reasons[0].kind is ExitKind.CRASH
    assert isinstance(reports.reasons[0].error, error)


def test_only_the_first_actor_constructed_claims_the_incarnation() -> None:
    class Parent(SupervisedActor):
        def __init__(self) -> None:
            super().__init__()
            self.helper = Worker.start()

    reports = Reports()
    token = launching.set(Incarnation("p", 1, Store(), reports))
    try:
        parent = Parent.start()
    finally:
        launching.reset(token)
    helper = parent.proxy().helper.get(timeout=WAIT)

    assert ping(helper)[0] == "Worker"
    helper.stop(timeout=WAIT)
    assert reports.reasons == []
    parent.stop(timeout=WAIT)
    assert [reason.kind for reason in reports.reasons] == [ExitKind.NORMAL]


def test_an_unsupervised_actor_has_its_own_identity_and_store() -> None:
    ref = Worker.start()
    actor = ref.proxy()

    assert actor.child_id.get(timeout=WAIT) == "Worker"
    assert actor.generation.get(timeout=WAIT) > 0
    assert isinstance(actor.store.get(timeout=WAIT), Store)
    ref.stop(timeout=WAIT)
