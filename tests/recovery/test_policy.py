"""RecoveryPolicy: the documented defaults, the backoff schedule, and loud refusals."""

from __future__ import annotations

from typing import Any

import pytest

from tinkex.recovery import RecoveryPolicy, RecoveryPolicyError

WEIGHTS = "tinker://run-1/weights/step-10"
SAMPLER = "tinker://run-1/sampler_weights/step-10"


def test_defaults_are_off_and_match_the_documented_values() -> None:
    policy = RecoveryPolicy()
    assert policy.enabled is False
    assert (policy.max_attempts, policy.backoff, policy.max_backoff) == (3, 5.0, 60.0)
    assert (policy.poll_interval, policy.max_concurrent) == (30.0, 1)
    assert policy.checkpoint_strategy == "latest" and policy.checkpoint_path is None
    assert policy.restore_optimizer is True
    assert policy.on_recovery is None and policy.on_failure is None


def test_backoff_doubles_from_backoff_and_stops_at_max_backoff() -> None:
    policy = RecoveryPolicy(backoff=5.0, max_backoff=60.0)
    assert [policy.delay_after(n) for n in range(1, 7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert policy.delay_after(10_000) == 60.0  # no float overflow on absurd attempt counts
    with pytest.raises(ValueError, match="start at 1"):
        policy.delay_after(0)


def test_a_specific_checkpoint_path_is_accepted() -> None:
    assert RecoveryPolicy(checkpoint_strategy=WEIGHTS).checkpoint_path == WEIGHTS
    weights_only = RecoveryPolicy(checkpoint_strategy=SAMPLER, restore_optimizer=False)
    assert weights_only.checkpoint_path == SAMPLER


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"enabled": "yes"}, "enabled", "True or False"),
        ({"restore_optimizer": 1}, "restore_optimizer", "True or False"),
        ({"max_attempts": 0}, "max_attempts", "integer >= 1"),
        ({"max_attempts": 2.5}, "max_attempts", "integer >= 1"),
        ({"max_attempts": True}, "max_attempts", "integer >= 1"),
        ({"max_concurrent": -1}, "max_concurrent", "integer >= 1"),
        ({"backoff": 0}, "backoff", "positive finite"),
        ({"backoff": float("nan")}, "backoff", "positive finite"),
        ({"poll_interval": float("inf")}, "poll_interval", "positive finite"),
        ({"poll_interval": "30"}, "poll_interval", "positive finite"),
        ({"backoff": 10.0, "max_backoff": 5.0}, "max_backoff", "at least backoff"),
        ({"checkpoint_strategy": "best"}, "checkpoint_strategy", "'best' is not supported"),
        ({"checkpoint_strategy": "newest"}, "checkpoint_strategy", "must start with"),
        ({"checkpoint_strategy": "tinker://run/weights"}, "checkpoint_strategy", "three"),
        ({"checkpoint_strategy": None}, "checkpoint_strategy", "got NoneType"),
        ({"checkpoint_strategy": SAMPLER}, "checkpoint_strategy", "no optimizer state"),
        ({"on_recovery": "print"}, "on_recovery", "callable"),
        ({"on_failure": 3}, "on_failure", "callable"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(
    fields: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(RecoveryPolicyError, match=says) as caught:
        RecoveryPolicy(**fields)
    assert caught.value.field == field
    assert f"RecoveryPolicy.{field}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        RecoveryPolicy(True)  # type: ignore[misc]
