"""Sampling results on the wire: the ``SampleResponse`` proto (PROTOCOL §3.8).

* ``sequences[].tokens``: int32; ``logprobs``: float32, one per token, absent or empty = none.
* ``stop_reason``: ``STOP_REASON_STOP`` / ``STOP_REASON_LENGTH``; any other value is an error.
* ``prompt_logprobs``: float32, one per prompt position, NaN where undefined (position 0);
  read back as ``None`` at those positions. Empty reads as "not requested".
* Top-k logprobs (``TopkLogprobs``): row-major ``length x k`` int32 ids and float32 logprobs.
  Unused cells hold the sentinel ``(0, -99999.0)``; a row whose first cell is the sentinel
  reads as ``None`` and trailing sentinel cells are dropped. ``length == 0`` or ``k == 0``
  reads as "not present".
* ``sequence_id`` is not on the wire: it comes from the promise's ``sample_sequence_ids``.

The JSON form of a result is ``SampleResponse.to_wire()`` (and legacy SDKs' JSON validates
into the same model); only the protobuf form needs this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tinkex.types import SampledSequence, SampleResponse, StopReason, TensorData

from . import tinker_public_pb2 as pb
from .chunks import text_tokens_to_bytes
from .messages import parse_message
from .tensors import _fill_tensor

__all__ = [
    "TOPK_SENTINEL_LOGPROB",
    "TOPK_SENTINEL_TOKEN",
    "SequenceArrays",
    "TopkArrays",
    "decode_sample_response",
    "encode_sample_response",
    "encode_sample_response_model",
    "topk_from_arrays",
    "topk_to_arrays",
]

TOPK_SENTINEL_TOKEN: Final = 0
TOPK_SENTINEL_LOGPROB: Final = -99999.0

TopkArrays = tuple[npt.ArrayLike, npt.ArrayLike]
"""Top-k logprobs as ``(token_ids [N, K], logprobs [N, K])``."""

_STOP_REASON_TO_WIRE: Final[dict[str, int]] = {
    "stop": pb.STOP_REASON_STOP,
    "length": pb.STOP_REASON_LENGTH,
}
_STOP_REASON_FROM_WIRE: Final[dict[int, StopReason]] = {
    pb.STOP_REASON_STOP: "stop",
    pb.STOP_REASON_LENGTH: "length",
}
_F32: Final = np.dtype("<f4")
_I32: Final = np.dtype("<i4")


@dataclass(frozen=True, slots=True)
class SequenceArrays:
    """One sampled sequence as the server produces it."""

    tokens: npt.ArrayLike
    stop_reason: StopReason
    logprobs: npt.ArrayLike | None = None
    topk_logprobs: TopkArrays | None = None


def _float32_bytes(values: npt.ArrayLike) -> bytes:
    return np.asarray(values, dtype=np.float32).reshape(-1).astype(_F32).tobytes()


def _fill_topk(msg: pb.TopkLogprobs, topk: TopkArrays, what: str) -> None:
    ids = np.asarray(topk[0])
    logprobs = np.asarray(topk[1])
    if ids.ndim != 2 or ids.shape != logprobs.shape:
        raise ValueError(
            f"{what}: token ids {list(ids.shape)} and logprobs {list(logprobs.shape)} must be "
            "two [N, K] matrices of the same shape"
        )
    msg.token_ids = text_tokens_to_bytes(ids)
    msg.logprobs = _float32_bytes(logprobs)
    msg.length, msg.k = (int(n) for n in ids.shape)


def encode_sample_response(
    sequences: Sequence[SequenceArrays],
    *,
    prompt_logprobs: npt.ArrayLike | None = None,
    topk_prompt_logprobs: TopkArrays | None = None,
    prompt_cache_hit_tokens: int = 0,
    target_prompt_logprobs: TensorData | npt.ArrayLike | None = None,
    prompt_alt_tokens: TopkArrays | None = None,
) -> bytes:
    """The serialized ``SampleResponse`` of numpy-level sampling results.

    ``prompt_logprobs`` is one float per prompt position with NaN where undefined (position 0).
    Top-k matrices use the sentinel ``(TOPK_SENTINEL_TOKEN, TOPK_SENTINEL_LOGPROB)`` in unused
    cells. ``target_prompt_logprobs`` (float32, the request's layout) and ``prompt_alt_tokens``
    (``(tokens, logprobs)``, each ``[len(prompt) - 1, k]``) are the 0.38 extras.
    """
    msg = pb.SampleResponse(prompt_cache_hit_tokens=int(prompt_cache_hit_tokens))
    for index, sequence in enumerate(sequences):
        what = f"sequences[{index}]"
        stop_reason = _STOP_REASON_TO_WIRE.get(sequence.stop_reason)
        if stop_reason is None:
            raise ValueError(
                f"{what}: stop_reason must be 'stop' or 'length', not {sequence.stop_reason!r}"
            )
        seq_msg = msg.sequences.add(stop_reason=stop_reason)
        tokens = np.asarray(sequence.tokens).reshape(-1)
        seq_msg.tokens = text_tokens_to_bytes(tokens)
        if sequence.logprobs is not None:
            logprobs = np.asarray(sequence.logprobs, dtype=np.float32).reshape(-1)
            if logprobs.size != tokens.size:
                raise ValueError(
                    f"{what}: {logprobs.size} logprobs for {tokens.size} tokens; they must match"
                )
            seq_msg.logprobs = logprobs.astype(_F32).tobytes()
        if sequence.topk_logprobs is not None:
            _fill_topk(seq_msg.topk_sampled_logprobs, sequence.topk_logprobs, f"{what}.topk")
    if prompt_logprobs is not None:
        msg.prompt_logprobs = _float32_bytes(prompt_logprobs)
    if topk_prompt_logprobs is not None:
        _fill_topk(msg.topk_prompt_logprobs, topk_prompt_logprobs, "topk_prompt_logprobs")
    if target_prompt_logprobs is not None:
        if not isinstance(target_prompt_logprobs, TensorData):
            target_prompt_logprobs = np.asarray(target_prompt_logprobs, dtype=np.float32)
        _fill_tensor(msg.target_prompt_logprobs, target_prompt_logprobs)
    if prompt_alt_tokens is not None:
        alt_tokens, alt_logprobs = prompt_alt_tokens
        _fill_tensor(msg.prompt_alt_tokens.tokens, np.asarray(alt_tokens, dtype=np.int64))
        _fill_tensor(msg.prompt_alt_tokens.logprobs, np.asarray(alt_logprobs, dtype=np.float32))
    return msg.SerializeToString()


def topk_to_arrays(
    rows: Sequence[Sequence[tuple[int, float]] | None], k: int | None = None
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Top-k rows (lists of ``(token_id, logprob)``, or ``None``) as two sentinel-padded matrices.

    ``k`` defaults to the longest row (at least 1 when there are rows, so that all-``None``
    rows survive the trip).
    """
    width = max((len(row) for row in rows if row is not None), default=0)
    if k is None:
        k = max(width, 1) if rows else 0
    elif width > k:
        raise ValueError(f"a top-k row has {width} entries, more than k={k}")
    ids = np.full((len(rows), k), TOPK_SENTINEL_TOKEN, dtype=np.int32)
    logprobs = np.full((len(rows), k), TOPK_SENTINEL_LOGPROB, dtype=np.float32)
    for index, row in enumerate(rows):
        if row:
            ids[index, : len(row)] = [token for token, _ in row]
            logprobs[index, : len(row)] = [logprob for _, logprob in row]
    return ids, logprobs


def topk_from_arrays(
    ids: npt.ArrayLike, logprobs: npt.ArrayLike
) -> list[list[tuple[int, float]] | None]:
    """Rows of ``(token_id, logprob)``.

    Rows starting with the sentinel read as ``None``; trailing sentinel cells are dropped.
    """
    id_matrix = np.asarray(ids, dtype=np.int64)
    lp_matrix = np.asarray(logprobs, dtype=np.float32)
    sentinel = (id_matrix == TOPK_SENTINEL_TOKEN) & (lp_matrix == np.float32(TOPK_SENTINEL_LOGPROB))
    rows: list[list[tuple[int, float]] | None] = []
    k = id_matrix.shape[1] if id_matrix.ndim == 2 else 0
    # Number of cells per row up to the last non-sentinel one.
    keep = np.where(sentinel, 0, np.arange(1, k + 1)).max(axis=1, initial=0)
    id_rows = id_matrix.tolist()
    lp_rows = lp_matrix.tolist()
    for index, width in enumerate(keep.tolist()):
        if k == 0 or sentinel[index, 0]:
            rows.append(None)
        else:
            rows.append(list(zip(id_rows[index][:width], lp_rows[index][:width], strict=True)))
    return rows


def _read_topk(msg: pb.TopkLogprobs, what: str) -> list[list[tuple[int, float]] | None] | None:
    length, k = int(msg.length), int(msg.k)
    if length == 0 or k == 0:
        return None
    cells = length * k
    if len(msg.token_ids) != cells * _I32.itemsize or len(msg.logprobs) != cells * _F32.itemsize:
        raise ValueError(
            f"{what}: {length}x{k} top-k needs {cells} int32 ids and {cells} float32 logprobs, got "
            f"{len(msg.token_ids)} and {len(msg.logprobs)} bytes"
        )
    ids = np.frombuffer(msg.token_ids, dtype=_I32).reshape(length, k)
    logprobs = np.frombuffer(msg.logprobs, dtype=_F32).reshape(length, k)
    return topk_from_arrays(ids, logprobs)


def _read_float32(raw: bytes, what: str) -> npt.NDArray[np.float32]:
    if len(raw) % _F32.itemsize:
        raise ValueError(f"{what}: {len(raw)} bytes is not a whole number of float32 values")
    return np.frombuffer(raw, dtype=_F32).astype(np.float32)


def decode_sample_response(
    body: bytes, sequence_ids: Sequence[str] | None = None
) -> SampleResponse:
    """The pydantic ``SampleResponse`` of a serialized ``SampleResponse``.

    ``sequence_ids`` (the promise's ``sample_sequence_ids``) become the sequences'
    ``sequence_id`` and must be one per sequence. A sampled-token top-k row that is all
    sentinel reads as ``[]`` (``SampledSequence.topk_logprobs`` has no ``None`` rows). The 0.38
    extras ``target_prompt_logprobs`` and ``prompt_alt_tokens`` have no place in the model and
    are not read.
    """
    msg = parse_message(pb.SampleResponse, body)
    if sequence_ids is not None and len(sequence_ids) != len(msg.sequences):
        raise ValueError(
            f"{len(sequence_ids)} sequence ids for {len(msg.sequences)} sampled sequences"
        )
    sequences: list[SampledSequence] = []
    for index, seq in enumerate(msg.sequences):
        what = f"sequences[{index}]"
        stop_reason = _STOP_REASON_FROM_WIRE.get(seq.stop_reason)
        if stop_reason is None:
            raise ValueError(f"{what}: unknown stop_reason enum value {int(seq.stop_reason)}")
        if len(seq.tokens) % _I32.itemsize:
            raise ValueError(
                f"{what}: {len(seq.tokens)} token bytes is not a whole number of int32"
            )
        tokens: list[int] = np.frombuffer(seq.tokens, dtype=_I32).tolist()
        logprobs: list[float] | None = None
        if seq.logprobs:
            logprobs = _read_float32(seq.logprobs, f"{what}.logprobs").tolist()
            if len(logprobs) != len(tokens):
                raise ValueError(f"{what}: {len(logprobs)} logprobs for {len(tokens)} tokens")
        topk: list[list[tuple[int, float]]] | None = None
        if seq.HasField("topk_sampled_logprobs"):
            rows = _read_topk(seq.topk_sampled_logprobs, f"{what}.topk_sampled_logprobs")
            topk = None if rows is None else [row or [] for row in rows]
        sequences.append(
            SampledSequence(
                stop_reason=stop_reason,
                tokens=tokens,
                logprobs=logprobs,
                topk_logprobs=topk,
                sequence_id=None if sequence_ids is None else sequence_ids[index],
            )
        )
    prompt_logprobs: list[float | None] | None = None
    if msg.prompt_logprobs:
        values = _read_float32(msg.prompt_logprobs, "prompt_logprobs")
        prompt_logprobs = values.tolist()
        for position in np.flatnonzero(np.isnan(values)).tolist():
            prompt_logprobs[position] = None
    topk_prompt = (
        _read_topk(msg.topk_prompt_logprobs, "topk_prompt_logprobs")
        if msg.HasField("topk_prompt_logprobs")
        else None
    )
    return SampleResponse(
        sequences=sequences,
        prompt_logprobs=prompt_logprobs,
        topk_prompt_logprobs=topk_prompt,
        prompt_cache_hit_tokens=int(msg.prompt_cache_hit_tokens),
    )


def encode_sample_response_model(response: SampleResponse) -> bytes:
    """The serialized proto of a pydantic ``SampleResponse`` (``None`` prompt logprobs → NaN)."""

    def topk(rows: Sequence[Sequence[tuple[int, float]] | None] | None) -> TopkArrays | None:
        return None if rows is None else topk_to_arrays(rows)

    prompt_logprobs: npt.NDArray[Any] | None = None
    if response.prompt_logprobs is not None:
        prompt_logprobs = np.array(
            [np.nan if v is None else v for v in response.prompt_logprobs], dtype=np.float32
        )
    return encode_sample_response(
        [
            SequenceArrays(
                tokens=np.asarray(seq.tokens, dtype=np.int64),
                stop_reason=seq.stop_reason,
                logprobs=seq.logprobs,
                topk_logprobs=topk(seq.topk_logprobs),
            )
            for seq in response.sequences
        ],
        prompt_logprobs=prompt_logprobs,
        topk_prompt_logprobs=topk(response.topk_prompt_logprobs),
        prompt_cache_hit_tokens=response.prompt_cache_hit_tokens,
    )
