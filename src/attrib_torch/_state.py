"""Leave the user's torch model exactly as found: buffers restored, train mode warned about."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from attrib import AttribWarning

__all__ = ["preserved", "train_mode_modules"]

# Modules whose output depends on the other samples of the batch or on chance in train mode.
_TRAIN_DEPENDENT = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm* (running stats)
    nn.modules.dropout._DropoutNd,  # Dropout*, AlphaDropout, FeatureAlphaDropout
)


def train_mode_modules(model: nn.Module) -> list[str]:
    """Names of the BatchNorm/Dropout-like modules of ``model`` that are in training mode."""
    return [
        name or type(module).__name__
        for name, module in model.named_modules()
        if module.training and isinstance(module, _TRAIN_DEPENDENT)
    ]


@contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Run a block on ``model`` and put every buffer back bit for bit afterwards.

    BatchNorm in training mode updates its running statistics during a
    forward pass; the block's changes to buffers are undone in ``finally``
    (also when it raised). Warns once (:class:`attrib.AttribWarning`) when
    BatchNorm/Dropout modules are in training mode, since their maps then mix
    the samples of a batch or change from call to call. The model's flags are
    not touched: switching it to eval mode is the user's choice.
    """
    training = train_mode_modules(model)
    if training:
        shown = ", ".join(repr(n) for n in training[:3]) + (", ..." if len(training) > 3 else "")
        warnings.warn(
            f"model: {len(training)} BatchNorm/Dropout module(s) are in training mode ({shown}): "
            "BatchNorm then mixes the samples of the batch and Dropout randomises the maps. "
            "Call model.eval() first (attrib leaves the mode to you and restores the buffers).",
            AttribWarning,
            stacklevel=4,
        )
    # (module, name, the buffer object, a copy of its values)
    saved = [
        (module, name, buffer, buffer.detach().clone())
        for module in model.modules()
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]
    try:
        yield
    finally:
        _restore(saved)


def _restore(saved: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]]) -> None:
    """Put back what the block changed, and only that.

    A buffer whose values did not change is left alone, never rewritten (its
    version counter is no guide: BatchNorm's kernels update running statistics
    without bumping it). Writing it anyway would bump its version while
    another thread's backward pass may still need it (BatchNorm saves its
    running statistics for backward in eval mode), which autograd reports as
    "modified by an inplace operation".
    """
    with torch.no_grad():
        for module, name, buffer, values in saved:
            if module._buffers.get(name) is not buffer:
                module._buffers[name] = buffer  # the same object, if the block replaced it
            if buffer.shape == values.shape and not _same_values(buffer, values):
                buffer.copy_(values)


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors of one shape hold equal values (NaN equals NaN, -0.0 equals 0.0)."""
    if a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(torch.equal(a, b) or ((a == b) | (a.isnan() & b.isnan())).all())
    return bool(torch.equal(a, b))
