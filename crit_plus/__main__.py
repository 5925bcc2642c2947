"""``python -m crit_plus``."""

from .cli import run

run()
