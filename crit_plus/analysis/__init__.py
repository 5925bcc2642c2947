"""Pure analyses of a checkpoint graph: they return dataclasses, never print.

One module per analysis (``summary``, ``explore``, ...); nothing here but this
docstring, so modules can be added without touching a shared file.
"""
