"""A Tinker-compatible server on one machine: real LoRA training and sampling in torch.

Needs the ``local`` extra (``pip install 'tinkex[local]'``). The client never imports
this package; it talks to it over HTTP like to the hosted service.
"""

from .config import ModelSource, ServerConfig
from .faults import FaultProfile
from .server import LocalServer

__all__ = ["FaultProfile", "LocalServer", "ModelSource", "ServerConfig"]
