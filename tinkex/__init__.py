"""tinkex: a supervised-actor SDK and local runtime for the Tinker fine-tuning API."""

__version__ = "0.1.0"
