"""tinkex: a supervised-actor SDK and local runtime for the Tinker fine-tuning API.

``import tinkex`` gives the clients, the futures, the configuration, the wire types and the
error classes; ``from tinkex import telemetry`` the signal helpers, ``from tinkex import
metrics`` the request counters and latency percentiles (collecting from import on).
"""

from . import metrics, telemetry
from .actors.tokenizer_cache import get_tokenizer
from .clients import RestClient, SamplingClient, ServiceClient, TrainingClient
from .clients.custom_loss import CustomLossError
from .config import Config
from .errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    ConfigError,
    ConflictError,
    FutureTimeoutError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestFailedError,
    RetryableFutureError,
    TinkerError,
    TinkexError,
    TokenizerError,
    UnprocessableEntityError,
)
from .futures import APIFuture
from .recovery import RecoveryMonitor, RecoveryPolicy
from .tokenizers import Tokenizer
from .types import (
    AdamParams,
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
    InvalidImageError,
    LoraConfig,
    ModelInput,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    TensorData,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIFuture",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AdamParams",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "Config",
    "ConfigError",
    "ConflictError",
    "CustomLossError",
    "Datum",
    "EncodedTextChunk",
    "ForwardBackwardOutput",
    "FutureTimeoutError",
    "ImageAssetPointerChunk",
    "ImageChunk",
    "InternalServerError",
    "InvalidImageError",
    "LoraConfig",
    "ModelInput",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RecoveryMonitor",
    "RecoveryPolicy",
    "RequestFailedError",
    "RestClient",
    "RetryableFutureError",
    "SampleResponse",
    "SampledSequence",
    "SamplingClient",
    "SamplingParams",
    "ServiceClient",
    "TensorData",
    "TinkerError",
    "TinkexError",
    "Tokenizer",
    "TokenizerError",
    "TrainingClient",
    "UnprocessableEntityError",
    "__version__",
    "get_tokenizer",
    "metrics",
    "telemetry",
]
