"""``from_torch``: a torch model attrib has a Flax twin of, as the identical ``(module, variables)``.

Twins: torchvision ResNets (:mod:`attrib_jax._resnet`), timm EfficientNets
without squeeze-excitation, i.e. EfficientNet-Lite (:mod:`attrib_jax._efficientnet`),
timm Vision Transformers (:mod:`attrib_jax._vit`) and attrib's demo CNN.
Weights are copied, not re-trained: conv kernels OIHW → HWIO (depthwise ones
too: (C, 1, kh, kw) → (kh, kw, 1, C)), the dense kernel ``W.T``, BatchNorm and
LayerNorm ``weight``/``bias`` → ``scale``/``bias``, BatchNorm's running
statistics → ``batch_stats`` ``mean``/``var``, a ViT's tokens, position
embedding and LayerScale ``gamma`` as they are; ``eps`` is the torch
model's. Arrays keep the torch dtype (float64 for a ``.double()`` model when
``jax_enable_x64`` is on).
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from attrib._errors import AttribTypeError, argument_error, shown

from ._resnet import ResNet

__all__ = ["from_torch"]


def _array(tensor: Any, axes: tuple[int, ...] | None = None) -> Any:
    """``tensor`` as a JAX array, its axes permuted to ``axes`` in NumPy first.

    A ``jnp`` transpose would compile one XLA program per kernel shape: 84 of
    them, ~2 s, for EfficientNet-Lite0.
    """
    array = tensor.detach().cpu().numpy()
    return jnp.asarray(array if axes is None else array.transpose(axes))


def _is_torchvision_resnet(model: Any) -> bool:
    names = ("conv1", "bn1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")
    return all(hasattr(model, n) for n in names)


def _is_timm_efficientnet(model: Any) -> bool:
    names = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool", "classifier")
    return all(hasattr(model, n) for n in names)


def from_torch(torch_model: Any) -> tuple[Any, dict[str, Any]]:
    """The Flax twin of a torchvision ResNet, a timm EfficientNet-Lite or ViT, and its variables.

    Parameters
    ----------
    torch_model : torchvision.models.ResNet, timm EfficientNet or attrib's demo CNN
        Left unchanged. ResNets: the standard architecture (``groups=1``,
        ``width_per_group=64``; 18/34/50/101/152). timm EfficientNets: blocks
        without squeeze-excitation (``tf_efficientnet_lite0`` .. ``lite4``,
        ``efficientnet_lite0``, e.g. :func:`attrib.models.efficientnet_lite0`),
        TF-``SAME`` or symmetric padding as the torch model has it. timm
        ``VisionTransformer`` and DeiT's ``VisionTransformerDistilled``
        (``vit_*_patch*``, ``deit_*``): pre-norm blocks of LayerNorm, qkv
        attention and a GELU MLP, optional LayerScale, class / distillation /
        register tokens, class-token or average pooling, at the image size
        the model was built for (``img_size=``); dynamic image sizes,
        attention pooling, q/k normalisation, other blocks or activations
        are refused, naming what is not supported. The demo CNN
        (:func:`attrib.demo_model`) is converted to its Flax twin.

    Returns
    -------
    (module, variables)
        ``module.apply(variables, x_nhwc)`` equals ``torch_model.eval()(x_nchw)``
        with ``x_nhwc = x_nchw.transpose(0, 2, 3, 1)``; pass the pair to
        :func:`attrib.explain` with ``backend="jax"``.

    Examples
    --------
    >>> import torchvision, attrib_jax
    >>> module, variables = attrib_jax.from_torch(torchvision.models.resnet18(weights=None).eval())
    >>> sorted(variables), module.stage_sizes
    (['batch_stats', 'params'], (2, 2, 2, 2))
    """
    torch_demo = sys.modules.get("attrib_torch._demo")  # a DemoCNN exists only if it is imported
    if torch_demo is not None and isinstance(torch_model, torch_demo.DemoCNN):
        from ._demo import from_torch_demo

        return from_torch_demo(torch_model)
    if _is_timm_efficientnet(torch_model):
        return _from_efficientnet(torch_model)
    if _is_timm_vit(torch_model):
        return _from_vit(torch_model)
    if not _is_torchvision_resnet(torch_model):
        raise argument_error("torch_model", "a torchvision ResNet (conv1, bn1, layer1..4, fc), "
                             "a timm EfficientNet-Lite or VisionTransformer, or attrib's demo CNN",
                             shown(type(torch_model).__name__), kind=AttribTypeError)
    first = torch_model.layer1[0]
    block = "bottleneck" if hasattr(first, "conv3") else "basic"
    stages = tuple(len(getattr(torch_model, f"layer{i}")) for i in range(1, 5))
    module = ResNet(block, stages, int(torch_model.fc.out_features),
                    bn_eps=_batchnorm_eps(torch_model))
    variables = _variables(torch_model, "a standard torchvision ResNet")
    _check_shapes(module, variables, "a standard torchvision ResNet (groups=1, width 64)",
                  f"{type(torch_model).__name__} whose weights do not fit ResNet{tuple(stages)}")
    return module, variables


def _batchnorm_eps(model: Any) -> float:
    """The one ``eps`` of the model's BatchNorm layers (1e-5 when it has none)."""
    found = {float(m.eps) for m in model.modules() if _is_batchnorm(m)}
    if len(found) > 1:
        raise argument_error("torch_model", "BatchNorm layers with one eps",
                             shown(f"eps values {sorted(found)}"))
    return found.pop() if found else 1e-5


def _is_batchnorm(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.BatchNorm2d)


def _variables(torch_model: Any, expected: str,
               plain: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``params`` and ``batch_stats`` from the state dict, under the torch module paths.

    ``plain``: parameter names (the state dict's last part) copied as they are.
    """
    import torch

    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for name, tensor in torch_model.state_dict().items():
        parts = name.split(".")
        leaf = parts[-1]
        if leaf == "num_batches_tracked":
            continue
        owner = _get(torch_model, parts[:-1])
        path = parts[:-1]
        if isinstance(owner, torch.nn.Conv2d):  # timm's Conv2dSame too
            _put(params, path, "kernel" if leaf == "weight" else "bias",
                 _array(tensor, (2, 3, 1, 0)) if leaf == "weight" else _array(tensor))
        elif isinstance(owner, torch.nn.LayerNorm):
            _put(params, path, "scale" if leaf == "weight" else "bias", _array(tensor))
        elif leaf in plain:
            _put(params, path, leaf, _array(tensor))
        elif isinstance(owner, torch.nn.Linear):
            _put(params, path, "kernel" if leaf == "weight" else "bias",
                 _array(tensor, (1, 0)) if leaf == "weight" else _array(tensor))
        elif _is_batchnorm(owner):  # timm's BatchNormAct2d too
            if leaf in ("running_mean", "running_var"):
                _put(stats, path, "mean" if leaf == "running_mean" else "var", _array(tensor))
            else:
                _put(params, path, "scale" if leaf == "weight" else "bias", _array(tensor))
        else:
            raise argument_error("torch_model", expected, shown(
                f"a model with parameter {name!r} of a {type(owner).__name__}"))
    return {"params": params, "batch_stats": stats}


def _check_shapes(module: Any, variables: dict[str, Any], expected: str, given: str,
                  size: tuple[int, int, int] = (64, 64, 3)) -> None:
    want_tree = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, *size)))
    got = jax.tree_util.tree_map(lambda a: a.shape, variables)
    want = jax.tree_util.tree_map(lambda a: a.shape, dict(want_tree))
    if got != want:
        raise argument_error("torch_model", expected, shown(given))


def _padding(conv: Any) -> Any:
    """Flax padding of a torch conv: ``"SAME"`` for timm's Conv2dSame, else its own pads."""
    if type(conv).__name__ == "Conv2dSame":
        return "SAME"
    if isinstance(conv.padding, str) or tuple(conv.dilation) != (1, 1):
        raise argument_error("torch_model", "convolutions with integer padding, no dilation",
                             shown(f"{conv!r}"))
    ph, pw = (int(p) for p in conv.padding)
    return ((ph, ph), (pw, pw))


def _from_efficientnet(model: Any) -> tuple[Any, dict[str, Any]]:
    """A timm EfficientNet without squeeze-excitation as :class:`attrib_jax._efficientnet.EfficientNet`."""
    import torch

    from ._efficientnet import BlockSpec, EfficientNet

    expected = "a timm EfficientNet-Lite (ReLU6 or ReLU, no squeeze-excitation)"
    acts = {type(m).__name__ for m in model.modules()
            if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.SiLU, torch.nn.Hardswish))}
    if len(acts) != 1 or not acts <= {"ReLU", "ReLU6"}:
        raise argument_error("torch_model", expected, shown(f"activations {sorted(acts)}"))
    act = jax.nn.relu6 if acts == {"ReLU6"} else jax.nn.relu
    stem = model.conv_stem
    stages: list[tuple[BlockSpec, ...]] = []
    for stage in model.blocks:
        specs = []
        for block in stage:
            kind = type(block).__name__
            if kind not in ("DepthwiseSeparableConv", "InvertedResidual") or not isinstance(
                    block.se, torch.nn.Identity):
                raise argument_error("torch_model", expected, shown(f"a block {kind} "
                                     "with squeeze-excitation or of another kind"))
            dw = block.conv_dw
            out = block.conv_pw if kind == "DepthwiseSeparableConv" else block.conv_pwl
            in_features = dw.in_channels if kind == "DepthwiseSeparableConv" else (
                block.conv_pw.in_channels)
            specs.append(BlockSpec("ds" if kind == "DepthwiseSeparableConv" else "ir",
                                   int(in_features), int(dw.out_channels), int(out.out_channels),
                                   int(dw.kernel_size[0]), int(dw.stride[0]), _padding(dw),
                                   bool(block.has_skip)))
        stages.append(tuple(specs))
    module = EfficientNet(
        stem=(int(stem.out_channels), int(stem.kernel_size[0]), int(stem.stride[0]),
              _padding(stem)),
        stages=tuple(stages), head_features=int(model.conv_head.out_channels),
        num_classes=int(model.classifier.out_features), eps=_batchnorm_eps(model), act=act)
    variables = _variables(model, expected)
    _check_shapes(module, variables, expected,
                  f"{type(model).__name__} whose weights do not fit the Flax EfficientNet")
    return module, variables


def _get(model: Any, parts: list[str]) -> Any:
    for part in parts:
        model = model[int(part)] if part.isdigit() and hasattr(model, "__getitem__") else getattr(
            model, part)
    return model


def _put(tree: dict[str, Any], path: list[str], leaf: str, value: Any) -> None:
    for part in path:
        tree = tree.setdefault(part, {})
    tree[leaf] = value if isinstance(value, jax.Array) else np.asarray(value)


_VIT_CLASSES = ("VisionTransformer", "VisionTransformerDistilled")


def _is_timm_vit(model: Any) -> bool:
    return type(model).__name__ in _VIT_CLASSES and type(model).__module__.startswith("timm.")


def _vit_refuse(what: str, suggestion: str | None = None) -> Exception:
    return argument_error(
        "torch_model", "a timm VisionTransformer with pre-norm blocks (LayerNorm, qkv attention, "
        "GELU MLP), a fixed image size and class-token or average pooling", shown(what),
        suggestion or "Explain the torch model itself (backend='torch'); from_torch converts "
        "the plain ViT family (vit_*_patch*, deit_*).")


def _kind(module: Any) -> str:
    return type(module).__name__


def _norm(module: Any, where: str) -> bool:
    """Whether ``module`` is a LayerNorm (True) or Identity (False); anything else is refused."""
    import torch

    if isinstance(module, torch.nn.Identity):
        return False
    if isinstance(module, torch.nn.LayerNorm) and module.elementwise_affine \
            and module.bias is not None:
        return True
    raise _vit_refuse(f"{_kind(module)} as {where}")


def _from_vit(model: Any) -> tuple[Any, dict[str, Any]]:
    """A timm ``VisionTransformer`` as :class:`attrib_jax._vit.VisionTransformer` (see the module)."""
    import torch

    from ._vit import VisionTransformer, ViTSpec

    if getattr(model, "dynamic_img_size", False):
        raise _vit_refuse("dynamic_img_size=True (the position embedding is resampled per input)",
                          "Build the model with dynamic_img_size=False and img_size= the size "
                          "you explain.")
    if getattr(model, "attn_pool", None) is not None:
        raise _vit_refuse(f"global_pool={model.global_pool!r} (attention pooling)")
    distilled = _kind(model) == "VisionTransformerDistilled"
    pool = str(model.global_pool)
    if pool not in ("token", "avg", "max", "avgmax"):
        raise _vit_refuse(f"global_pool={pool!r}")
    embed = model.patch_embed
    proj = getattr(embed, "proj", None)
    if _kind(embed) != "PatchEmbed" or not isinstance(proj, torch.nn.Conv2d) \
            or getattr(embed, "dynamic_img_pad", False) or not getattr(embed, "flatten", False):
        raise _vit_refuse(f"patch embedding {_kind(embed)}")
    patch = tuple(int(p) for p in proj.kernel_size)
    if tuple(proj.stride) != patch or patch[0] != patch[1] or tuple(proj.padding) != (0, 0) \
            or tuple(proj.dilation) != (1, 1):
        raise _vit_refuse(f"patch convolution {proj!r}")
    for name in ("patch_drop", "pos_drop", "head_drop"):  # identities in eval mode
        part = getattr(model, name, None)
        if part is not None and _kind(part) not in ("Identity", "Dropout", "PatchDropout"):
            raise _vit_refuse(f"{_kind(part)} as {name}")
    blocks = list(model.blocks)
    if not blocks:
        raise _vit_refuse("a model without blocks")
    layer_scale, gelu_tanh = _check_blocks(blocks)
    first = blocks[0]
    eps = {float(m.eps) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    if len(eps) != 1:
        raise _vit_refuse(f"LayerNorm eps values {sorted(eps)}")
    head = model.head
    if not isinstance(head, torch.nn.Linear):
        raise _vit_refuse(f"head {_kind(head)} (num_classes=0)",
                          "Build the model with a classification head (num_classes > 0).")
    reg = model.reg_token
    spec = ViTSpec(
        patch=patch[0], grid=(int(embed.grid_size[0]), int(embed.grid_size[1])),
        embed_dim=int(proj.out_channels), depth=len(blocks),
        num_heads=int(first.attn.num_heads), head_dim=int(first.attn.head_dim),
        mlp_hidden=int(first.mlp.fc1.out_features), num_classes=int(head.out_features),
        eps=eps.pop(), class_token=model.cls_token is not None,
        reg_tokens=0 if reg is None else int(reg.shape[1]), distilled=distilled,
        pos_embed=model.pos_embed is not None, no_embed_class=bool(model.no_embed_class),
        patch_bias=proj.bias is not None, patch_norm=_norm(embed.norm, "patch_embed.norm"),
        pre_norm=_norm(model.norm_pre, "norm_pre"), qkv_bias=first.attn.qkv.bias is not None,
        layer_scale=layer_scale, gelu_tanh=gelu_tanh, final_norm=_norm(model.norm, "norm"),
        fc_norm=False if distilled else _norm(model.fc_norm, "fc_norm"), global_pool=pool,
        pool_include_prefix=bool(getattr(model, "pool_include_prefix", False)))
    if distilled and (not spec.class_token or spec.reg_tokens):
        raise _vit_refuse("a distilled ViT without a class token or with registers")
    module = VisionTransformer(spec)
    expected = "a timm VisionTransformer the Flax twin mirrors"
    variables = _variables(model, expected, frozenset(
        {"cls_token", "dist_token", "reg_token", "pos_embed", "gamma"}))
    variables = {"params": variables["params"]}  # no BatchNorm: no batch_stats
    if distilled:  # timm's distilled head never applies fc_norm
        variables["params"].pop("fc_norm", None)
    _check_shapes(module, variables, expected,
                  f"{_kind(model)} whose weights do not fit the Flax ViT {spec}",
                  (spec.grid[0] * spec.patch, spec.grid[1] * spec.patch, int(proj.in_channels)))
    return module, variables


def _check_blocks(blocks: list[Any]) -> tuple[bool, bool]:
    """Every block is timm's pre-norm ``Block``, all alike: (LayerScale?, tanh GELU?)."""
    import torch

    gelus = set()
    layer_scale = False
    for j, block in enumerate(blocks):
        where = f"blocks.{j}"
        if _kind(block) != "Block":
            raise _vit_refuse(f"{where}: a {_kind(block)} (only timm's pre-norm Block is mirrored)")
        if j == 0:
            layer_scale = _kind(block.ls1) == "LayerScale"
        attn, mlp = block.attn, block.mlp
        if _kind(attn) != "Attention" or not all(
                isinstance(getattr(attn, part, None), torch.nn.Identity)
                for part in ("q_norm", "k_norm", "norm")) or getattr(attn, "gate", None) is not None:
            raise _vit_refuse(f"{where}.attn: {_kind(attn)} with q/k normalisation, a scale norm "
                              "or a gate" if _kind(attn) == "Attention" else
                              f"{where}.attn: a {_kind(attn)}")
        if not isinstance(attn.qkv, torch.nn.Linear) or attn.proj.bias is None \
                or float(attn.scale) != float(attn.head_dim) ** -0.5:
            raise _vit_refuse(f"{where}.attn without an output bias or with another scale")
        if _kind(mlp) != "Mlp" or not isinstance(mlp.norm, torch.nn.Identity) \
                or not isinstance(mlp.fc1, torch.nn.Linear) or mlp.fc1.bias is None \
                or mlp.fc2.bias is None:
            raise _vit_refuse(f"{where}.mlp: a {_kind(mlp)} (only a biased fc1, GELU, fc2 Mlp)")
        act = mlp.act
        if isinstance(act, torch.nn.GELU) and act.approximate in ("none", "tanh"):
            gelus.add(act.approximate == "tanh")
        elif _kind(act) in ("GELU", "GELUTanh") and type(act).__module__.startswith("timm."):
            gelus.add(_kind(act) == "GELUTanh")
        else:
            raise _vit_refuse(f"{where}.mlp.act: {_kind(act)}")
        for name in ("ls1", "ls2"):
            part = getattr(block, name)
            if _kind(part) != ("LayerScale" if layer_scale else "Identity"):
                raise _vit_refuse(f"{where}.{name}: {_kind(part)} (LayerScale in every block "
                                  "or in none)")
        for name in ("norm1", "norm2"):
            if not _norm(getattr(block, name), f"{where}.{name}"):
                raise _vit_refuse(f"{where}.{name}: Identity")
    if len(gelus) != 1:
        raise _vit_refuse("exact and tanh GELU mixed")
    return layer_scale, gelus.pop()
