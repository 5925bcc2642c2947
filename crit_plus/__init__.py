"""crit-plus: read CRIU checkpoints — what is in them, how big, will they restore, what changed."""

__version__ = "0.1.0"
