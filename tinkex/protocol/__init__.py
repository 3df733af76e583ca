"""Wire codecs shared by the tinkex client and the local server.

* :mod:`.tensors` — ``TensorData`` / numpy ⇄ ``Tensor`` and ``BatchedTensor``
* :mod:`.chunks` — model input chunks ⇄ ``Chunk``
* :mod:`.forward_backward` — the protobuf forward_backward request and its output
* :mod:`.sample` — the protobuf ``SampleResponse``
* :mod:`.compression` — zstd / gzip bodies with a decompressed-size limit
* :mod:`.metrics` — ``name:reduction`` metric folding across chunks
* :mod:`.content_types` — media types and ``Accept`` negotiation

The protobuf messages live in :mod:`.tinker_public_pb2`, generated from
``tinker_public.proto`` by ``scripts/gen_proto.py`` into a private descriptor pool, so they
coexist with the official ``tinker`` SDK in one process.
"""

from . import tinker_public_pb2
from .chunks import (
    ProtoChunk,
    decode_chunk,
    decode_model_input,
    encode_chunk,
    encode_model_input,
    text_tokens_from_bytes,
    text_tokens_to_bytes,
)
from .compression import (
    DEFAULT_MAX_DECOMPRESSED_SIZE,
    compress_zstd,
    decode_content_encoding,
    decompress_gzip,
    decompress_zstd,
)
from .content_types import (
    JSON_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    ZSTD_ENCODING,
    is_protobuf,
    wants_protobuf,
)
from .forward_backward import (
    DecodedDatum,
    DecodedForwardBackward,
    decode_forward_backward_output,
    decode_forward_backward_request,
    encode_forward_backward_output,
    encode_forward_backward_request,
)
from .messages import parse_message
from .metrics import (
    KNOWN_REDUCTIONS,
    combine_metrics,
    merge_forward_backward_outputs,
    split_metric_key,
)
from .sample import (
    TOPK_SENTINEL_LOGPROB,
    TOPK_SENTINEL_TOKEN,
    SequenceArrays,
    TopkArrays,
    decode_sample_response,
    encode_sample_response,
    encode_sample_response_model,
    topk_from_arrays,
    topk_to_arrays,
)
from .tensors import (
    csr_from_dense,
    decode_tensor,
    decode_tensor_array,
    encode_tensor,
    pack_batched_tensor,
    public_dtype,
    unpack_batched_tensor,
    wire_dtype_for,
)

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "JSON_CONTENT_TYPE",
    "KNOWN_REDUCTIONS",
    "PROTOBUF_CONTENT_TYPE",
    "TOPK_SENTINEL_LOGPROB",
    "TOPK_SENTINEL_TOKEN",
    "ZSTD_ENCODING",
    "DecodedDatum",
    "DecodedForwardBackward",
    "ProtoChunk",
    "SequenceArrays",
    "TopkArrays",
    "combine_metrics",
    "compress_zstd",
    "csr_from_dense",
    "decode_chunk",
    "decode_content_encoding",
    "decode_forward_backward_output",
    "decode_forward_backward_request",
    "decode_model_input",
    "decode_sample_response",
    "decode_tensor",
    "decode_tensor_array",
    "decompress_gzip",
    "decompress_zstd",
    "encode_chunk",
    "encode_forward_backward_output",
    "encode_forward_backward_request",
    "encode_model_input",
    "encode_sample_response",
    "encode_sample_response_model",
    "encode_tensor",
    "is_protobuf",
    "merge_forward_backward_outputs",
    "pack_batched_tensor",
    "parse_message",
    "public_dtype",
    "split_metric_key",
    "text_tokens_from_bytes",
    "text_tokens_to_bytes",
    "tinker_public_pb2",
    "topk_from_arrays",
    "topk_to_arrays",
    "unpack_batched_tensor",
    "wants_protobuf",
    "wire_dtype_for",
]
