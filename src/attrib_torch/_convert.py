"""Check user inputs and move them between NumPy and torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from attrib._errors import AttribTypeError, argument_error, shown

__all__ = ["check_inputs", "as_numpy", "as_tensor"]


def check_inputs(inputs: Any) -> tuple[int, ...]:
    """Shape of ``inputs`` after checking it is a finite floating batch (N, ...).

    Raises :class:`attrib.AttribError` naming ``inputs`` otherwise.
    """
    if isinstance(inputs, torch.Tensor):
        floating = inputs.is_floating_point()
        dtype = str(inputs.dtype)
        fix = "inputs.float()"
    elif isinstance(inputs, np.ndarray):
        floating = np.issubdtype(inputs.dtype, np.floating)
        dtype = str(inputs.dtype)
        fix = "inputs.astype(np.float32)"
    else:
        raise argument_error(
            "inputs", "a batch as a NumPy array or a torch tensor, shape (N, C, H, W)",
            shown(f"an object of type {type(inputs).__name__}"),
            "Convert it with np.asarray(...) or torch.as_tensor(...).",
            kind=AttribTypeError,
        )
    shape = tuple(int(s) for s in inputs.shape)
    if not floating:
        raise argument_error(
            "inputs", "a floating-point batch (gradients need real values)",
            shown(f"dtype {dtype}"),
            f"Convert integer images with {fix} (and scale them as the model expects, "
            "e.g. / 255).",
            kind=AttribTypeError,
        )
    if len(shape) < 2:
        raise argument_error(
            "inputs", "a batch of shape (N, ...), e.g. (N, C, H, W) for images",
            shown(f"shape {shape}"), "Add a batch axis, e.g. inputs[None] for one sample.",
        )
    if shape[0] < 1:
        raise argument_error("inputs", "a batch of at least one sample", shown(f"shape {shape}"))
    finite = bool(torch.isfinite(inputs).all()) if isinstance(inputs, torch.Tensor) \
        else bool(np.isfinite(inputs).all())
    if not finite:
        raise argument_error(
            "inputs", "finite values", shown("an array containing NaN or inf"),
            "Check the preprocessing that produced it.",
        )
    return shape


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy copy of ``tensor`` (half and bfloat16 come back as float32)."""
    tensor = tensor.detach()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return np.array(tensor.cpu().numpy(), copy=True)


def as_tensor(inputs: Any, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    """A fresh tensor with the values of ``inputs`` on ``device``, as ``dtype``.

    Never a view of the user's data: the model may write into it in place.
    """
    if isinstance(inputs, torch.Tensor):
        tensor = inputs.detach()
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(inputs))
    out = tensor.to(device=device, dtype=dtype or tensor.dtype)
    if out.data_ptr() == tensor.data_ptr():
        out = out.clone()
    return out
