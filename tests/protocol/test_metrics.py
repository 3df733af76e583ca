"""Metric reduction across forward_backward chunks (PROTOCOL §3.4)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex.protocol import (
    KNOWN_REDUCTIONS,
    combine_metrics,
    merge_forward_backward_outputs,
    split_metric_key,
)
from tinkex.types import ForwardBackwardOutput, TensorData

# Three chunks of 1, 3 and 0 datums reporting 2.0, 4.0 and 10.0.
CHUNK_VALUES = [2.0, 4.0, 10.0]
CHUNK_DATUMS = [1, 3, 0]


@pytest.mark.parametrize(
    ("reduction", "expected"),
    [
        ("sum", 16.0),
        ("mean", (2.0 * 1 + 4.0 * 3 + 10.0 * 0) / 4),  # weighted by datums
        ("min", 2.0),
        ("max", 10.0),
        ("slack", 10.0 - 3.5),  # max - weighted mean
        ("hash2", 16.0),  # integer parts added modulo 2**64
        ("hash", 16.0),
    ],
)
def test_reduction_table(reduction: str, expected: float) -> None:
    key = f"metric:{reduction}"
    chunks = [({key: v}, n) for v, n in zip(CHUNK_VALUES, CHUNK_DATUMS, strict=True)]
    assert combine_metrics(chunks) == {key: pytest.approx(expected)}


def test_unique_keeps_every_value() -> None:
    chunks = [({"seed:unique": v}, n) for v, n in zip(CHUNK_VALUES, CHUNK_DATUMS, strict=True)]
    assert combine_metrics(chunks) == {
        "seed:unique": 2.0,
        "seed:unique_1": 4.0,
        "seed:unique_2": 10.0,
    }


def test_mean_without_datums_is_a_plain_mean() -> None:
    assert combine_metrics([({"x:mean": 1.0}, 0), ({"x:mean": 3.0}, 0)]) == {"x:mean": 2.0}


@pytest.mark.parametrize("key", ["loss", "a:b:sum", "", "::"])
def test_keys_need_exactly_one_colon(key: str) -> None:
    with pytest.raises(ValueError, match=f"metric key {key!r}"):
        combine_metrics([({key: 1.0}, 1)])
    with pytest.raises(ValueError, match="exactly one colon"):
        split_metric_key(key)


def test_a_bad_key_fails_even_with_an_unknown_reduction_beside_it() -> None:
    with pytest.raises(ValueError, match="'bad'"):
        combine_metrics([({"ok:newfangled": 1.0, "bad": 2.0}, 1)])


def test_unknown_reductions_are_dropped() -> None:
    assert combine_metrics([({"loss:sum": 1.0, "x:median": 5.0}, 1)]) == {"loss:sum": 1.0}
    assert "median" not in KNOWN_REDUCTIONS


def test_single_chunk_values_pass_through() -> None:
    metrics = {"loss:sum": 1.5, "acc:mean": 0.25, "h:hash2": 12345.0, "u:unique": 7.0}
    assert combine_metrics([(metrics, 4)]) == metrics


def test_keys_missing_from_some_chunks_combine_over_the_rest() -> None:
    combined = combine_metrics([({"a:sum": 1.0}, 1), ({"a:sum": 2.0, "b:mean": 6.0}, 2)])
    assert combined == {"a:sum": 3.0, "b:mean": 6.0}


def test_hash2_wraps_modulo_2_64() -> None:
    combined = combine_metrics(
        [({"h:hash2": float(2**63)}, 1), ({"h:hash2": float(2**63 + 2**12)}, 1)]
    )
    assert combined == {"h:hash2": float(2**12)}
    with pytest.raises(ValueError, match="finite"):
        combine_metrics([({"h:hash2": math.nan}, 1)])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**53), st.integers(0, 8)),
        min_size=1,
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_reductions_do_not_depend_on_chunk_order(
    chunks: list[tuple[int, int]], rng: random.Random
) -> None:
    keys = ["a:sum", "b:mean", "c:min", "d:max", "e:slack", "f:hash2"]
    as_metrics = [({k: float(v) for k in keys}, n) for v, n in chunks]
    shuffled = list(as_metrics)
    rng.shuffle(shuffled)
    first, second = combine_metrics(as_metrics), combine_metrics(shuffled)
    assert first.keys() == second.keys()
    for key in keys:
        assert first[key] == pytest.approx(second[key], rel=1e-9)


def output(
    n: int, metrics: dict[str, float], output_type: str = "ArrayRecord"
) -> ForwardBackwardOutput:
    return ForwardBackwardOutput(
        loss_fn_output_type=output_type,
        loss_fn_outputs=[
            {"logprobs": TensorData(data=[float(i)], dtype="float32")} for i in range(n)
        ],
        metrics=metrics,
    )


def test_merge_concatenates_outputs_and_combines_metrics() -> None:
    merged = merge_forward_backward_outputs(
        [output(1, {"loss:sum": 1.0, "lr:mean": 1.0}), output(3, {"loss:sum": 2.0, "lr:mean": 5.0})]
    )
    assert [d["logprobs"].data for d in merged.loss_fn_outputs] == [[0.0], [0.0], [1.0], [2.0]]
    assert merged.metrics == {"loss:sum": 3.0, "lr:mean": 4.0}
    assert merged.loss_fn_output_type == "ArrayRecord"


def test_merge_with_explicit_datum_counts() -> None:
    merged = merge_forward_backward_outputs(
        [output(0, {"x:mean": 1.0}), output(0, {"x:mean": 4.0})], datums_per_chunk=[2, 1]
    )
    assert merged.metrics == {"x:mean": 2.0}
    with pytest.raises(ValueError, match="1 datum counts for 2"):
        merge_forward_backward_outputs([output(0, {}), output(0, {})], datums_per_chunk=[1])


def test_merge_of_nothing() -> None:
    assert merge_forward_backward_outputs([]) == ForwardBackwardOutput(
        loss_fn_outputs=[], metrics={}
    )


def test_merge_validates_single_chunks() -> None:
    with pytest.raises(ValueError, match="'loss'"):
        merge_forward_backward_outputs([output(1, {"loss": 1.0})])
