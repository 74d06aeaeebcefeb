"""Check user inputs and move them between NumPy and torch.

What is accepted, converted or refused (the decisions are documented in
``docs/how-to/threads-and-bad-input.md``):

- floating batches (N, ...) of any floating dtype, as a NumPy array or a
  tensor on any real device: **converted** to the model's device and dtype
  (float64 inputs to a float32 model are computed in float32; the
  explanation's ``inputs`` are the converted values);
- integer and boolean images (``uint8`` included) are **refused**: attrib
  cannot know the scaling the model was trained with (``/ 255``, mean/std),
  and a silent guess would give a plausible-looking wrong map;
- complex values, NaN or inf, an empty batch, a missing batch axis, sparse
  tensors and tensors on the ``meta`` device (no data) are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from attrib._errors import AttribTypeError, argument_error, shown
from attrib._inputs import check_batch

__all__ = ["check_inputs", "check_all", "as_numpy", "as_tensor"]


def check_all(inputs: Any) -> Any:
    """:func:`check_inputs` of one batch, or of each of several inputs (a tuple of shapes).

    Several inputs (a tuple, for ``model(x1, x2, ...)``) must share the batch size.
    """
    if isinstance(inputs, tuple):
        return check_batch(tuple(check_inputs(x) for x in inputs))
    return check_inputs(inputs)


def check_inputs(inputs: Any) -> tuple[int, ...]:
    """Shape of ``inputs`` after checking it is a finite floating batch (N, ...).

    Raises :class:`attrib.AttribError` naming ``inputs`` otherwise.
    """
    if isinstance(inputs, torch.Tensor):
        if inputs.is_meta:
            raise argument_error(
                "inputs", "a tensor with data (on the CPU or an accelerator)",
                shown(f"a tensor of shape {tuple(inputs.shape)} on the 'meta' device"),
                "Meta tensors carry shapes only; create the batch on a real device.",
            )
        if inputs.layout != torch.strided:
            raise argument_error(
                "inputs", "a dense (strided) tensor", shown(f"a tensor with layout {inputs.layout}"),
                "Convert it with inputs.to_dense().", kind=AttribTypeError,
            )
        floating = inputs.is_floating_point()
        dtype = str(inputs.dtype)
        fix = "inputs.float()"
    elif isinstance(inputs, np.ndarray):
        floating = bool(np.issubdtype(inputs.dtype, np.floating))
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
            f"Integer images are not converted, since attrib cannot know the model's scaling: "
            f"convert them with {fix} and scale them as the model expects (e.g. / 255, "
            "then the mean/std of its training data).",
            kind=AttribTypeError,
        )
    if len(shape) < 2:
        raise argument_error(
            "inputs", "a batch of shape (N, ...), e.g. (N, C, H, W) for images",
            shown(f"shape {shape}"), "Add a batch axis, e.g. inputs[None] for one sample.",
        )
    if shape[0] < 1:
        raise argument_error("inputs", "a batch of at least one sample", shown(f"shape {shape}"))
    if not _all_finite(inputs):
        raise argument_error(
            "inputs", "finite values", shown("an array containing NaN or inf"),
            "Check the preprocessing that produced it.",
        )
    return shape


def _all_finite(inputs: torch.Tensor | np.ndarray) -> bool:
    """Whether every value of ``inputs`` is finite.

    For a tensor, one sum first (a reduction without the full boolean
    temporary ``isfinite`` writes: ~30x cheaper on a ResNet batch): any NaN or
    inf makes the sum NaN or inf, so a finite sum proves every value finite;
    a sum that is not finite (also a finite batch whose sum overflows) is
    decided by the full ``isfinite`` pass. NumPy's ``isfinite`` is already
    cheap.
    """
    if isinstance(inputs, torch.Tensor):
        with torch.no_grad():
            return bool(torch.isfinite(inputs.sum())) or bool(torch.isfinite(inputs).all())
    return bool(np.isfinite(inputs).all())


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
    copied = False
    if isinstance(inputs, torch.Tensor):
        tensor = inputs.detach()
    else:
        array = np.ascontiguousarray(inputs)
        if not array.flags.writeable:  # e.g. Ray Data's zero-copy batches; torch warns on a view
            array, copied = array.copy(), True
        tensor = torch.from_numpy(array)
    out = tensor.to(device=device, dtype=dtype or tensor.dtype)
    if out.data_ptr() == tensor.data_ptr() and not copied:
        out = out.clone()
    return out


def shape_hint(model: torch.nn.Module, shape: tuple[int, ...]) -> str:
    """What is likely wrong with inputs of ``shape`` that ``model`` rejected (or "")."""
    first = next((m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)),
                 None)
    channels = getattr(first, "in_channels", None)
    spatial = len(getattr(first, "kernel_size", ())) if first is not None else 2
    if len(shape) == spatial + 1:
        return (f"This looks like one sample without the batch axis: pass inputs[None] "
                f"(shape {(1, *shape)}).")
    if len(shape) < spatial + 1 and first is not None:
        return f"The model's first convolution takes {spatial + 2}-D batches (N, C, ...)."
    if channels is not None and len(shape) == spatial + 2 and shape[1] != channels:
        if shape[-1] == channels:
            order = (0, len(shape) - 1, *range(1, len(shape) - 1))
            return (f"This looks like channels-last (NHWC) data; torch models take NCHW: "
                    f"pass inputs.permute{order} (or np.transpose(inputs, {order})).")
        return (f"The model's first convolution takes {channels} channels (axis 1, NCHW); "
                f"the inputs have {shape[1]}.")
    return ""


def check_model_device(device: torch.device) -> None:
    """Refuse a model whose parameters live on the ``meta`` device (shapes, no data)."""
    if device.type == "meta":
        raise argument_error(
            "model", "a model whose parameters hold data",
            shown("a model with parameters on the 'meta' device"),
            "Materialize it first, e.g. model.to_empty(device='cpu') and then load its weights.",
        )
