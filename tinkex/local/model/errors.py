"""The one exception type the compute core raises for bad user input."""

from __future__ import annotations

__all__ = ["ModelInputError"]


class ModelInputError(ValueError):
    """Something in the caller's request is invalid (not a fault of the server).

    The message names the argument, the bad value and what is allowed, e.g.
    ``"datum 3: model_input token id 70000 is outside the vocabulary [0, 259)"``.
    """
