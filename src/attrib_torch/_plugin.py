"""Registers the torch backend. Imports no torch: the adapter module does, on first use."""

from __future__ import annotations

import sys
from collections.abc import Callable

from attrib import Backend, hookimpl


def _is_torch_model(model: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


@hookimpl
def attrib_register_backends(register: Callable[[Backend], None]) -> None:
    register(
        Backend(
            name="torch",
            frameworks=("torch",),
            detect=_is_torch_model,
            adapter="attrib_torch._model:TorchModel",
            install_hint="pip install 'attrib[torch]'",
            layout="NCHW",
            description="PyTorch nn.Module, inputs NCHW",
        )
    )
