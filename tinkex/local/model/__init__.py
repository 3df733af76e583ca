"""Compute core of ``tinkex serve``: a Llama-family decoder in torch with LoRA training
(``forward_backward`` + AdamW ``optim_step``) and KV-cached sampling. Pure torch/numpy; no
HTTP and no threads of its own.
"""

from .base import BaseModel
from .config import SUPPORTED_ARCHITECTURES, ModelConfig
from .errors import ModelInputError
from .loading import BUILTIN_MODEL, load_base_model
from .lora import LoraSpec, LoraWeights
from .losses import LOSS_FUNCTIONS
from .optim import AdamConfig
from .sampler import TOPK_SENTINEL_LOGPROB, SampledSeq, SampleOutput, Sampler
from .trainable import DatumArrays, ForwardBackwardResult, TrainableModel
from .zero import ZERO_MODEL, ZeroModel

__all__ = [
    "BUILTIN_MODEL",
    "LOSS_FUNCTIONS",
    "SUPPORTED_ARCHITECTURES",
    "TOPK_SENTINEL_LOGPROB",
    "ZERO_MODEL",
    "AdamConfig",
    "BaseModel",
    "DatumArrays",
    "ForwardBackwardResult",
    "LoraSpec",
    "LoraWeights",
    "ModelConfig",
    "ModelInputError",
    "SampleOutput",
    "SampledSeq",
    "Sampler",
    "TrainableModel",
    "ZeroModel",
    "load_base_model",
]
