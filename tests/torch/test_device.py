"""The backend runs on the model's device (needs CUDA; skipped on a machine without one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attrib

from .conftest import RELU_SPELLINGS, assert_unchanged, batch, snapshot, tiny_net

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "gradcam", "guided_gradcam"])
def test_model_on_cuda_inputs_anywhere(method: str) -> None:
    cpu_net = tiny_net(RELU_SPELLINGS["F.relu(inplace=True)"])
    gpu_net = tiny_net(RELU_SPELLINGS["F.relu(inplace=True)"]).cuda()
    x = batch()
    layer = {"layer": "conv2"} if "cam" in method else {}
    expected = attrib.explain(cpu_net, x, method=method, target=[3, 1], **layer).attribution
    before = snapshot(gpu_net)
    for inputs in (x, x.numpy(), x.cuda()):
        e = attrib.explain(gpu_net, inputs, method=method, target=[3, 1], **layer)
        assert isinstance(e.attribution, np.ndarray)
        np.testing.assert_allclose(e.attribution, expected, rtol=1e-9, atol=1e-12)
        assert_unchanged(gpu_net, before)
