"""Metric reduction across chunks of a forward_backward call (PROTOCOL §3.4).

A metric key is ``"<name>:<reduction>"`` with exactly one colon; anything else is a
``ValueError`` (the official SDK fails the same way, even for a single chunk). Each chunk
reports its metrics and the number of datums it processed; :func:`combine_metrics` folds them:

============  =============================================================================
reduction     combined value
============  =============================================================================
``sum``       sum of the chunk values
``mean``      mean weighted by each chunk's datum count (plain mean if every count is 0)
``min``       smallest value
``max``       largest value
``slack``     ``max - weighted mean`` (how far the worst chunk is above the average)
``unique``    every value kept: the first as ``key``, the others as ``key_1``, ``key_2``, …
``hash2``     order-independent combine of per-chunk hashes: the integer parts of the values
              added modulo 2**64 (so one chunk's value is kept as is, and the result does not
              depend on chunk order). This is the rule the official client applies.
``hash``      the same rule as ``hash2`` (accepted as an alias).
============  =============================================================================

Keys with any other reduction are **dropped silently**, as the official SDK does: a server may
add reductions that an older client does not know, and that must not fail the call.
Unlike the official SDK, a key reported by only some chunks is combined over the chunks that
report it (the official client drops such keys).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from tinkex.types import ForwardBackwardOutput

__all__ = [
    "KNOWN_REDUCTIONS",
    "combine_metrics",
    "merge_forward_backward_outputs",
    "split_metric_key",
]

_HASH_MODULUS: Final = 2**64


def split_metric_key(key: str) -> tuple[str, str]:
    """``(name, reduction)`` of a metric key; ``ValueError`` unless it has exactly one colon."""
    if key.count(":") != 1:
        raise ValueError(
            f"metric key {key!r} must have the form 'name:reduction' with exactly one colon "
            "(e.g. 'loss:sum')"
        )
    name, reduction = key.split(":")
    return name, reduction


def _weighted_mean(values: Sequence[float], weights: Sequence[int]) -> float:
    total = sum(weights)
    if total <= 0:
        return math.fsum(values) / len(values)
    return math.fsum(v * w for v, w in zip(values, weights, strict=True)) / total


def _hash_combine(values: Sequence[float], weights: Sequence[int]) -> float:
    del weights
    acc = 0
    for value in values:
        if not math.isfinite(value):
            raise ValueError(f"a hash metric value must be finite, got {value}")
        acc = (acc + int(value)) % _HASH_MODULUS
    return float(acc)


_REDUCERS: Final[dict[str, Callable[[Sequence[float], Sequence[int]], float]]] = {
    "sum": lambda values, _: math.fsum(values),
    "mean": _weighted_mean,
    "min": lambda values, _: min(values),
    "max": lambda values, _: max(values),
    "slack": lambda values, weights: max(values) - _weighted_mean(values, weights),
    "hash2": _hash_combine,
    "hash": _hash_combine,
}

KNOWN_REDUCTIONS: Final = frozenset({*_REDUCERS, "unique"})
"""The reductions :func:`combine_metrics` understands; keys with others are dropped."""


def combine_metrics(chunks: Sequence[tuple[Mapping[str, float], int]]) -> dict[str, float]:
    """Fold per-chunk metrics, each given with the chunk's datum count, into one dict.

    Output keys keep the order in which they first appear. Every key of every chunk is
    validated first, so a bad key fails the call even when its reduction is unknown.
    """
    collected: dict[str, tuple[list[float], list[int]]] = {}
    for metrics, datums in chunks:
        if datums < 0:
            raise ValueError(f"a chunk cannot have a negative datum count ({datums})")
        for key, value in metrics.items():
            split_metric_key(key)
            values, weights = collected.setdefault(key, ([], []))
            values.append(float(value))
            weights.append(datums)
    combined: dict[str, float] = {}
    for key, (values, weights) in collected.items():
        _, reduction = split_metric_key(key)
        if reduction == "unique":
            combined[key] = values[0]
            for index, value in enumerate(values[1:], start=1):
                combined[f"{key}_{index}"] = value
            continue
        reducer = _REDUCERS.get(reduction)
        if reducer is not None:
            combined[key] = reducer(values, weights)
    return combined


def merge_forward_backward_outputs(
    outputs: Sequence[ForwardBackwardOutput],
    datums_per_chunk: Sequence[int] | None = None,
) -> ForwardBackwardOutput:
    """One output for a call that was sent in chunks: outputs concatenated, metrics combined.

    ``datums_per_chunk`` defaults to each chunk's number of ``loss_fn_outputs``. The output
    type is the first chunk's (``"ArrayRecord"`` when there are no chunks). The official SDK
    runs even a single chunk through this, so a single chunk with a malformed key fails too.
    """
    if datums_per_chunk is None:
        datums_per_chunk = [len(output.loss_fn_outputs) for output in outputs]
    if len(datums_per_chunk) != len(outputs):
        raise ValueError(
            f"{len(datums_per_chunk)} datum counts for {len(outputs)} forward_backward outputs"
        )
    return ForwardBackwardOutput(
        loss_fn_output_type=outputs[0].loss_fn_output_type if outputs else "ArrayRecord",
        loss_fn_outputs=[datum for output in outputs for datum in output.loss_fn_outputs],
        metrics=combine_metrics(
            [
                (output.metrics, count)
                for output, count in zip(outputs, datums_per_chunk, strict=True)
            ]
        ),
    )
