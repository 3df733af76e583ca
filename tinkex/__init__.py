"""tinkex: a supervised-actor SDK and local runtime for the Tinker fine-tuning API.

``import tinkex`` gives the clients, the futures, the configuration, the wire types and the
error classes; ``from tinkex import telemetry`` the signal helpers.
"""

from . import telemetry
from .clients import SamplingClient, ServiceClient, TrainingClient
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
    UnprocessableEntityError,
)
from .futures import APIFuture
from .types import (
    AdamParams,
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
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
    "Datum",
    "EncodedTextChunk",
    "ForwardBackwardOutput",
    "FutureTimeoutError",
    "ImageAssetPointerChunk",
    "ImageChunk",
    "InternalServerError",
    "LoraConfig",
    "ModelInput",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestFailedError",
    "RetryableFutureError",
    "SampleResponse",
    "SampledSequence",
    "SamplingClient",
    "SamplingParams",
    "ServiceClient",
    "TensorData",
    "TinkerError",
    "TinkexError",
    "TrainingClient",
    "UnprocessableEntityError",
    "__version__",
    "telemetry",
]
