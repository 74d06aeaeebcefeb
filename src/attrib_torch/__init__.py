"""attrib's PyTorch backend (registered through the ``attrib`` entry points).

Importing this package does not import torch; :mod:`attrib_torch._model` does,
when the backend is first used.
"""
