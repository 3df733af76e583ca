"""The public clients: thin facades over the runtime's actors, holding no state of their own."""

from .rest import RestClient
from .sampling import SamplingClient
from .service import ServiceClient
from .training import TrainingClient

__all__ = ["RestClient", "SamplingClient", "ServiceClient", "TrainingClient"]
