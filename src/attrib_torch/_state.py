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

    The snapshot is one concatenated copy per dtype and device (a few kernel
    calls for the hundreds of small buffers of a ResNet, not one clone each),
    compared with the buffers' values after the block in one ``torch.equal``;
    only when that differs are the buffers compared and restored one by one.
    """
    buffers: list[tuple[nn.Module, str, torch.Tensor]] = []
    training = False
    for module in model.modules():  # one walk: buffers, and whether a warning is due
        training = training or (module.training and isinstance(module, _TRAIN_DEPENDENT))
        buffers.extend((module, name, buffer) for name, buffer in module._buffers.items()
                       if buffer is not None)
    if training:
        names = train_mode_modules(model)
        shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        warnings.warn(
            f"model: {len(names)} BatchNorm/Dropout module(s) are in training mode ({shown}): "
            "BatchNorm then mixes the samples of the batch and Dropout randomises the maps. "
            "Call model.eval() first (attrib leaves the mode to you and restores the buffers).",
            AttribWarning,
            stacklevel=4,
        )
    saved = _Snapshot(buffers)
    try:
        yield
    finally:
        saved.restore()


class _Snapshot:
    """The values of ``buffers``, one flat copy per (dtype, device) group.

    Buffers that cannot be flattened into a group (sparse, on the ``meta``
    device) are cloned one by one.
    """

    def __init__(self, buffers: list[tuple[nn.Module, str, torch.Tensor]]) -> None:
        self.buffers = buffers
        self.shapes = [buffer.shape for _, _, buffer in buffers]
        groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        self.single: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for index, (_, _, buffer) in enumerate(buffers):
                if buffer.layout == torch.strided and not buffer.is_meta:
                    groups.setdefault((buffer.dtype, buffer.device), []).append(index)
                else:
                    self.single[index] = buffer.detach().clone()
            self.groups = [(indices, _flat([buffers[i][2] for i in indices]))
                           for indices in groups.values()]

    def restore(self) -> None:
        """Put back what the block changed, and only that.

        A buffer whose values did not change is left alone, never rewritten (its
        version counter is no guide: BatchNorm's kernels update running statistics
        without bumping it). Writing it anyway would bump its version while
        another thread's backward pass may still need it (BatchNorm saves its
        running statistics for backward in eval mode), which autograd reports as
        "modified by an inplace operation".
        """
        with torch.no_grad():
            for module, name, buffer in self.buffers:
                if module._buffers.get(name) is not buffer:
                    module._buffers[name] = buffer  # the same object, if the block replaced it
            for indices, values in self.groups:
                now = [self.buffers[i][2] for i in indices]
                if torch.equal(_flat(now), values):  # a changed shape changes the length
                    continue  # the usual case: nothing changed
                offset = 0
                for tensor, i in zip(now, indices):
                    size = self.shapes[i].numel()
                    _put_back(tensor, values[offset:offset + size].view(self.shapes[i]))
                    offset += size
            for i, values in self.single.items():
                _put_back(self.buffers[i][2], values)


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The values of ``tensors`` (one dtype and device) one after another, as one 1-D copy.

    Called under ``torch.no_grad()`` (no graph even for a buffer requiring grad).
    """
    if all(t.dim() == 0 for t in tensors):
        return torch.stack(tensors)
    return torch.cat([t if t.dim() == 1 else t.reshape(-1) for t in tensors])


def _put_back(buffer: torch.Tensor, values: torch.Tensor) -> None:
    """Copy ``values`` into ``buffer`` if the two differ (same shape only)."""
    if buffer.shape == values.shape and not _same_values(buffer, values):
        buffer.copy_(values)


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors of one shape hold equal values (NaN equals NaN, -0.0 equals 0.0)."""
    if a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(torch.equal(a, b) or ((a == b) | (a.isnan() & b.isnan())).all())
    return bool(torch.equal(a, b))
