"""``python -m tinkex.cli``."""

from .main import main

main()
