"""The op types of the OpenVINO IR interpreter (:mod:`generator.openvino_ir`), each in torch.

Every op is a function ``op(layer, *inputs) -> list of output tensors`` (one per output port, in
order), registered by IR type name in :data:`OPS`; a :class:`Layer` carries its ``<data>``
attributes as strings. Semantics follow the OpenVINO opset1-opset8 specifications for the
attributes those versions define; an attribute value an op does not implement raises
:class:`UnsupportedOpError`. Integer inputs (axes, shapes, lengths) are metadata: they stay on
the CPU, and :func:`_binary` moves them to the data's device and dtype when an elementwise op
mixes them with floats. Supporting another op type is one function here plus its line in
:data:`OPS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: IR ``element_type`` -> NumPy dtype of the bytes in the ``.bin`` file.
ELEMENT_TYPES: dict[str, Any] = {
    "f32": np.float32, "f16": np.float16, "f64": np.float64,
    "i64": np.int64, "i32": np.int32, "i16": np.int16, "i8": np.int8,
    "u64": np.uint64, "u32": np.uint32, "u16": np.uint16, "u8": np.uint8, "boolean": np.bool_,
}
_TORCH_TYPES: dict[str, torch.dtype] = {
    "f32": torch.float32, "f16": torch.float16, "f64": torch.float64, "bf16": torch.bfloat16,
    "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8,
    "u8": torch.uint8, "boolean": torch.bool,
}


class UnsupportedOpError(NotImplementedError):
    """The IR uses an op type (or an attribute value) this interpreter does not implement."""


@dataclass
class Layer:
    """One ``<layer>`` of the XML: its inputs as ``(producer id, producer port)`` in port order,
    its output port ids in order, and its ``<data>`` attributes as strings."""

    id: str
    name: str
    type: str
    version: str
    attrs: dict[str, str]
    inputs: list[tuple[str, int]] = field(default_factory=list)
    output_ports: list[int] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers


def _ints(value: torch.Tensor | Sequence[int]) -> list[int]:
    """A 0-D/1-D integer tensor (or list) as a Python list of ints."""
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.reshape(-1).tolist()]
    return [int(v) for v in value]


def attr_ints(attrs: dict[str, str], key: str, default: Sequence[int] = ()) -> list[int]:
    """A comma-separated integer attribute (``"1,1"``) as a list; ``default`` when absent."""
    text = attrs.get(key, "").strip()
    return [int(v) for v in text.split(",") if v.strip()] if text else list(default)


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _same_device(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like.device) if t.device != like.device else t


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    def op(layer: Layer, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        mode = layer.attrs.get("auto_broadcast", "numpy")
        if mode not in ("numpy", "none"):
            raise UnsupportedOpError(f"{layer.type} {layer.name!r}: auto_broadcast={mode}")
        if a.is_floating_point() != b.is_floating_point():  # a float op with a metadata const
            a, b = (a, b.to(a.dtype)) if a.is_floating_point() else (a.to(b.dtype), b)
        if a.device != b.device:  # metadata lives on the CPU: move it to the data
            a, b = (a.to(b.device), b) if a.device.type == "cpu" else (a, b.to(a.device))
        return [fn(a, b)]
    return op


def _conv_padding(layer: Layer, spatial: Sequence[int], kernel: Sequence[int],
                  strides: Sequence[int], dilations: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(pads_begin, pads_end)`` per spatial axis for a forward convolution's ``auto_pad``."""
    mode = layer.attrs.get("auto_pad", "explicit")
    if mode in ("explicit", "notset", ""):
        return (attr_ints(layer.attrs, "pads_begin", [0] * len(kernel)),
                attr_ints(layer.attrs, "pads_end", [0] * len(kernel)))
    if mode == "valid":
        return [0] * len(kernel), [0] * len(kernel)
    if mode in ("same_upper", "same_lower"):
        begin, end = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if mode == "same_upper" else big)
            end.append(big if mode == "same_upper" else small)
        return begin, end
    raise UnsupportedOpError(f"{layer.type} {layer.name!r}: auto_pad={mode}")


def _conv2d(layer: Layer, x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """2-D convolution with IR attributes; ``weight`` is (O, I/groups, kH, kW)."""
    if x.dim() != 4:
        raise UnsupportedOpError(f"{layer.type} {layer.name!r}: only 2-D convolutions "
                                 f"(input rank {x.dim()})")
    strides = attr_ints(layer.attrs, "strides", [1, 1])
    dilations = attr_ints(layer.attrs, "dilations", [1, 1])
    begin, end = _conv_padding(layer, x.shape[2:], weight.shape[2:], strides, dilations)
    if begin == end:
        return F.conv2d(x, weight, None, strides, begin, dilations, groups)
    x = F.pad(x, [begin[1], end[1], begin[0], end[0]])
    return F.conv2d(x, weight, None, strides, 0, dilations, groups)


# ----------------------------------------------------------------------------- ops
# Each op takes the layer and its input tensors and returns its outputs in port order.


def op_result(layer, x):
    """Result: the graph output; identity."""
    return [x]


def op_convert(layer, x):
    """Convert: ``x`` cast to ``destination_type`` (float targets keep the module's dtype)."""
    dst = _TORCH_TYPES.get(layer.attrs.get("destination_type", ""))
    if dst is None:
        raise UnsupportedOpError(f"Convert {layer.name!r}: destination_type "
                                 f"{layer.attrs.get('destination_type')}")
    return [x if (dst.is_floating_point and x.is_floating_point()) else x.to(dst)]


def op_shape_of(layer, x):
    """ShapeOf: the input's shape as a 1-D integer tensor (kept on the CPU)."""
    return [torch.tensor(list(x.shape), dtype=torch.int64)]


def op_gather(layer, data, indices, axis):
    """Gather: ``data`` indexed along ``axis`` by ``indices`` (negative ones count from the
    end); the axis is replaced by the indices' shape."""
    if int(layer.attrs.get("batch_dims", "0")) != 0:
        raise UnsupportedOpError(f"Gather {layer.name!r}: batch_dims != 0")
    ax = _axis(_ints(axis)[0], data.dim())
    idx = _same_device(indices.to(torch.int64), data)
    idx = torch.where(idx < 0, idx + data.shape[ax], idx)
    out = data.index_select(ax, idx.reshape(-1))
    return [out.reshape((*data.shape[:ax], *indices.shape, *data.shape[ax + 1:]))]


def op_unsqueeze(layer, x, axes):
    """Unsqueeze: new size-1 axes at ``axes`` (positions in the output)."""
    rank = x.dim() + len(_ints(axes))
    for ax in sorted(_axis(a, rank) for a in _ints(axes)):
        x = x.unsqueeze(ax)
    return [x]


def op_squeeze(layer, x, axes=None):
    """Squeeze: drop the size-1 axes ``axes`` (all size-1 axes when not given)."""
    if axes is None:
        return [x.squeeze()]
    for ax in sorted((_axis(a, x.dim()) for a in _ints(axes)), reverse=True):
        x = x.squeeze(ax)
    return [x]


def op_concat(layer, *xs):
    """Concat: inputs joined along ``axis``."""
    ax = int(layer.attrs.get("axis", "0"))
    if any(x.is_floating_point() for x in xs):
        like = next(x for x in xs if x.is_floating_point())
        xs = tuple(_same_device(x, like).to(like.dtype) for x in xs)
    return [torch.cat(xs, dim=ax)]


def op_reshape(layer, x, shape):
    """Reshape: ``x`` to ``shape``; ``-1`` is inferred, ``0`` copies the input's dim when
    ``special_zero`` (a constant leading 1 is read as the batch when it otherwise fails)."""
    target = _ints(shape)
    if layer.attrs.get("special_zero", "false").lower() == "true":
        target = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
    known = math.prod(v for v in target if v != -1)
    fits = (x.numel() == known) if -1 not in target else (known > 0 and x.numel() % known == 0)
    if not fits and target and target[0] == 1 and x.dim() > 0:
        batched = [x.shape[0], *target[1:]]  # a graph exported at batch 1, run at batch N
        known = math.prod(v for v in batched if v != -1)
        if (x.numel() == known) if -1 not in batched else x.numel() % known == 0:
            target = batched
    return [x.reshape(target)]


def op_broadcast(layer, x, shape, axes=None):
    """Broadcast: ``x`` expanded to ``shape`` (numpy) or to both shapes' broadcast
    (bidirectional)."""
    mode = layer.attrs.get("mode", "numpy")
    target = _ints(shape)
    if mode == "bidirectional":
        target = list(torch.broadcast_shapes(tuple(x.shape), tuple(target)))
    elif mode != "numpy":
        raise UnsupportedOpError(f"Broadcast {layer.name!r}: mode={mode}")
    return [x.expand(tuple(target)).contiguous()]


def op_tile(layer, x, repeats):
    """Tile: ``x`` repeated ``repeats[i]`` times along axis ``i`` (ranks aligned on the
    right)."""
    reps = _ints(repeats)
    while x.dim() < len(reps):
        x = x.unsqueeze(0)
    reps = [1] * (x.dim() - len(reps)) + reps
    return [x.repeat(*reps)]


def op_variadic_split(layer, x, axis, lengths):
    """VariadicSplit: ``x`` cut along ``axis`` into pieces of ``lengths`` (one ``-1`` takes
    the rest)."""
    ax = _axis(_ints(axis)[0], x.dim())
    sizes = _ints(lengths)
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[ax] - (sum(sizes) + 1)
    return list(torch.split(x, sizes, dim=ax))


def op_split(layer, x, axis):
    """Split: ``x`` cut along ``axis`` into ``num_splits`` equal pieces."""
    ax = _axis(_ints(axis)[0], x.dim())
    n = int(layer.attrs["num_splits"])
    return list(torch.split(x, x.shape[ax] // n, dim=ax))


def op_transpose(layer, x, order):
    """Transpose: axes permuted to ``order`` (empty: reversed)."""
    perm = _ints(order) or list(range(x.dim()))[::-1]
    return [x.permute(*perm)]


def op_matmul(layer, a, b):
    """MatMul: ``a @ b`` after transposing the last two axes where ``transpose_a/b``."""
    if layer.attrs.get("transpose_a", "false").lower() == "true" and a.dim() > 1:
        a = a.transpose(-1, -2)
    if layer.attrs.get("transpose_b", "false").lower() == "true" and b.dim() > 1:
        b = b.transpose(-1, -2)
    return [torch.matmul(a, b)]


def op_reduce_mean(layer, x, axes):
    """ReduceMean: mean over ``axes`` (kept as size 1 when ``keep_dims``)."""
    keep = layer.attrs.get("keep_dims", "false").lower() == "true"
    return [x.mean(dim=tuple(_axis(a, x.dim()) for a in _ints(axes)), keepdim=keep)]


def op_reduce_sum(layer, x, axes):
    """ReduceSum: sum over ``axes`` (kept as size 1 when ``keep_dims``)."""
    keep = layer.attrs.get("keep_dims", "false").lower() == "true"
    return [x.sum(dim=tuple(_axis(a, x.dim()) for a in _ints(axes)), keepdim=keep)]


def op_prelu(layer, x, slope):
    """PReLU: ``x`` where ``x >= 0``, else ``slope * x``; a 1-D slope of C values runs along
    axis 1 (channels)."""
    slope = _same_device(slope, x).to(x.dtype)
    if slope.numel() == 1 or (slope.dim() == 1 and x.dim() > 1 and slope.numel() == x.shape[1]):
        return [F.prelu(x, slope.reshape(-1))]
    return [torch.where(x >= 0, x, x * slope)]


def op_relu(layer, x):
    """Relu: ``max(x, 0)``."""
    return [torch.relu(x)]


def op_sigmoid(layer, x):
    """Sigmoid: ``1 / (1 + exp(-x))``."""
    return [torch.sigmoid(x)]


def op_tanh(layer, x):
    """Tanh: hyperbolic tangent."""
    return [torch.tanh(x)]


def op_clamp(layer, x):
    """Clamp: ``x`` limited to ``[min, max]``."""
    return [x.clamp(float(layer.attrs["min"]), float(layer.attrs["max"]))]


def op_convolution(layer, x, weight):
    """Convolution: 2-D convolution, weight (O, I, kH, kW), strides/dilations/pads attrs."""
    return [_conv2d(layer, x, weight, 1)]


def op_group_convolution(layer, x, weight):
    """GroupConvolution: 2-D convolution in G groups, weight (G, O/G, I/G, kH, kW)."""
    g = weight.shape[0]
    return [_conv2d(layer, x, weight.reshape(-1, *weight.shape[2:]), g)]


def op_group_convolution_backprop_data(layer, x, weight, output_shape=None):
    """GroupConvolutionBackpropData: 2-D transposed convolution in G groups, weight
    (G, I/G, O/G, kH, kW); the output is cropped by ``pads_begin/end`` and grown by
    ``output_padding`` at the end."""
    if output_shape is not None or x.dim() != 4:
        raise UnsupportedOpError(f"{layer.type} {layer.name!r}: only 2-D, without the "
                                 "output_shape input")
    if layer.attrs.get("auto_pad", "explicit") not in ("explicit", "notset", "valid", ""):
        raise UnsupportedOpError(f"{layer.type} {layer.name!r}: auto_pad="
                                 f"{layer.attrs['auto_pad']}")
    g, kh, kw = weight.shape[0], weight.shape[-2], weight.shape[-1]
    strides = attr_ints(layer.attrs, "strides", [1, 1])
    dilations = attr_ints(layer.attrs, "dilations", [1, 1])
    valid = layer.attrs.get("auto_pad") == "valid"
    begin = [0, 0] if valid else attr_ints(layer.attrs, "pads_begin", [0, 0])
    end = [0, 0] if valid else attr_ints(layer.attrs, "pads_end", [0, 0])
    extra = attr_ints(layer.attrs, "output_padding", [0, 0])
    w = weight.reshape(-1, *weight.shape[3:])  # (I, O/G, kH, kW)
    if (weight.shape[2] == 1 and g == x.shape[1] and strides == [kh, kw]
            and dilations == [1, 1] and begin == end == extra == [0, 0]):
        # depthwise with stride == kernel: each output pixel is one product, so spread the
        # input over the kernel's cells (the same numbers as conv_transpose2d, done faster)
        # (NHWC memory, what the convolutions around it use: see IRModule.channels_last)
        n, c, h, wd = x.shape
        taps = w.reshape(c, kh, kw).permute(1, 2, 0).reshape(1, 1, kh, 1, kw, c)
        nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None, :] * taps
        return [nhwc.reshape(n, h * kh, wd * kw, c).permute(0, 3, 1, 2)]
    out = F.conv_transpose2d(x, w, None, strides, 0, 0, g, dilations)
    h, wd = out.shape[2:]
    out = out[:, :, begin[0]:h - end[0], begin[1]:wd - end[1]]
    if extra != [0, 0]:
        out = F.pad(out, [0, extra[1], 0, extra[0]])
    return [out]


OPS: dict[str, Callable[..., list[torch.Tensor]]] = {
    "Result": op_result,
    "Convert": op_convert,
    "ShapeOf": op_shape_of,
    "Gather": op_gather,
    "Unsqueeze": op_unsqueeze,
    "Squeeze": op_squeeze,
    "Concat": op_concat,
    "Reshape": op_reshape,
    "Broadcast": op_broadcast,
    "Tile": op_tile,
    "VariadicSplit": op_variadic_split,
    "Split": op_split,
    "Transpose": op_transpose,
    "MatMul": op_matmul,
    "Add": _binary(torch.add),
    "Subtract": _binary(torch.sub),
    "Multiply": _binary(torch.mul),
    "Divide": _binary(torch.div),
    "Power": _binary(torch.pow),
    "Maximum": _binary(torch.maximum),
    "Minimum": _binary(torch.minimum),
    "ReduceMean": op_reduce_mean,
    "ReduceSum": op_reduce_sum,
    "PReLU": op_prelu,
    "Relu": op_relu,
    "Sigmoid": op_sigmoid,
    "Tanh": op_tanh,
    "Clamp": op_clamp,
    "Convolution": op_convolution,
    "GroupConvolution": op_group_convolution,
    "GroupConvolutionBackpropData": op_group_convolution_backprop_data,
}
