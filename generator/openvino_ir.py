"""A small interpreter of OpenVINO IR (``.xml`` graph + ``.bin`` weights, IR v10/v11) in torch.

:func:`load_ir` parses the XML and the weights file into an :class:`IRModule`, a
``torch.nn.Module`` that runs the graph's layers in topological order, each with a few lines of
torch. It exists so that a network shipped only as OpenVINO IR (MobileStyleGAN, see
:mod:`generator.mobilestylegan_torch`) can run batched on a GPU and in fp16.

What it supports:

* **Op types** (opset1-opset8 semantics, the attributes these versions define):
  Parameter, Const, Result, Convert, ShapeOf, Gather (``batch_dims=0``), Unsqueeze, Squeeze,
  Concat, Reshape (``special_zero``, ``-1``), Broadcast (numpy, bidirectional), Tile,
  VariadicSplit, Split, Transpose, MatMul, Add, Subtract, Multiply, Divide, Power, Maximum,
  Minimum, ReduceMean, ReduceSum, PReLU, Relu, Sigmoid, Tanh, Clamp, Convolution,
  GroupConvolution, GroupConvolutionBackpropData (2-D, no ``output_shape`` input). Any other
  type raises :class:`UnsupportedOpError` naming it (and the layers that use it) when the file
  is loaded, not half-way through a run.
* **Batch N**: the batch flows through the graph's own shape arithmetic (``ShapeOf`` ->
  ``Gather`` -> ``Concat`` -> ``Reshape``), which is how exporters write dynamic shapes. A graph
  exported at batch 1 with a *constant* target shape still runs at batch N: when a Reshape's
  target does not fit its input's element count, starts with 1 and would fit with the input's
  own leading dimension, that dimension is used (the batch), instead of failing.
* **Devices and dtypes**: floating-point constants are buffers, so ``module.to(device, dtype)``
  moves and casts them; inputs are cast to the module's floating dtype on its device. Integer
  constants (axes, shapes, split lengths: metadata, not weights) stay on the CPU as plain
  tensors, so the shape arithmetic never waits on a GPU.
* **Partial runs**: ``run(inputs, outputs=["Add_754"])`` returns any layers' outputs by layer
  name (``"name"`` is port 0, ``"name:2"`` names an output port id) and computes only what they
  depend on.
* **Memory and speed**: intermediate values are freed after their last use; an elementwise op
  (Add, Multiply, Subtract, Divide, scalar PReLU) writes into an input that dies there and that
  no view shares; convolutions run on channels-last (NHWC) memory by default. These change
  float rounding only (summation order), not the maths.

Not supported: control flow (Loop, If, TensorIterator), 1-D and 3-D convolutions, Gather with
``batch_dims``, GroupConvolutionBackpropData's ``output_shape`` input. The shapes written in the
XML's ports are not used (the ops compute their own), so a Parameter's declared batch of 1 does
not limit the batch.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def _attr_ints(attrs: dict[str, str], key: str, default: Sequence[int] = ()) -> list[int]:
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
        return (_attr_ints(layer.attrs, "pads_begin", [0] * len(kernel)),
                _attr_ints(layer.attrs, "pads_end", [0] * len(kernel)))
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
    strides = _attr_ints(layer.attrs, "strides", [1, 1])
    dilations = _attr_ints(layer.attrs, "dilations", [1, 1])
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
    strides = _attr_ints(layer.attrs, "strides", [1, 1])
    dilations = _attr_ints(layer.attrs, "dilations", [1, 1])
    valid = layer.attrs.get("auto_pad") == "valid"
    begin = [0, 0] if valid else _attr_ints(layer.attrs, "pads_begin", [0, 0])
    end = [0, 0] if valid else _attr_ints(layer.attrs, "pads_end", [0, 0])
    extra = _attr_ints(layer.attrs, "output_padding", [0, 0])
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
_SOURCES = ("Parameter", "Const")
#: Ops whose outputs are new tensors (not views of an input): a runner may overwrite them.
_FRESH = frozenset({"Add", "Subtract", "Multiply", "Divide", "Power", "PReLU", "Relu", "MatMul",
                    "Convolution", "GroupConvolution", "GroupConvolutionBackpropData"})
#: In-place tensor methods of the elementwise ops, and whether the operands may swap.
_IN_PLACE = {"Add": ("add_", True), "Multiply": ("mul_", True), "Subtract": ("sub_", False),
             "Divide": ("div_", False)}
_CONVOLUTIONS = frozenset({"Convolution", "GroupConvolution"})


# ----------------------------------------------------------------------------- parsing


def parse_ir(xml: str | Path | bytes) -> tuple[str, list[Layer]]:
    """``(net name, layers)`` from an IR XML file's path (or its bytes); each layer's inputs
    are resolved from ``<edges>`` in input-port order."""
    root = ET.fromstring(xml) if isinstance(xml, bytes) else ET.parse(str(xml)).getroot()
    version = root.get("version", "")
    if version not in ("10", "11"):
        raise UnsupportedOpError(f"IR version {version!r}: only versions 10 and 11 are read")
    layers: dict[str, Layer] = {}
    in_ports: dict[str, list[int]] = {}
    layer_nodes, edge_nodes = root.find("layers"), root.find("edges")
    for node in layer_nodes if layer_nodes is not None else []:
        data = node.find("data")
        layer = Layer(node.get("id"), node.get("name", node.get("id")), node.get("type"),
                      node.get("version", ""), dict(data.attrib) if data is not None else {})
        out = node.find("output")
        layer.output_ports = [int(p.get("id")) for p in out] if out is not None else []
        inp = node.find("input")
        in_ports[layer.id] = [int(p.get("id")) for p in inp] if inp is not None else []
        layers[layer.id] = layer
    feeds: dict[str, dict[int, tuple[str, int]]] = {lid: {} for lid in layers}
    for edge in edge_nodes if edge_nodes is not None else []:
        feeds[edge.get("to-layer")][int(edge.get("to-port"))] = (
            edge.get("from-layer"), int(edge.get("from-port")))
    for lid, layer in layers.items():
        ports = in_ports[lid] or sorted(feeds[lid])
        missing = [p for p in ports if p not in feeds[lid]]
        if missing:
            raise ValueError(f"layer {layer.name!r}: input ports {missing} have no edge")
        layer.inputs = [feeds[lid][p] for p in ports]
    return root.get("name", ""), list(layers.values())


def _topological(layers: list[Layer]) -> list[Layer]:
    """Layers ordered so that each comes after its producers (ties: file order)."""
    by_id = {layer.id: layer for layer in layers}
    order, state = [], {}
    for start in layers:
        stack = [(start, 0)]
        while stack:
            layer, i = stack.pop()
            if i == 0:
                if state.get(layer.id) == 2:
                    continue
                if state.get(layer.id) == 1:
                    raise ValueError(f"the graph has a cycle through {layer.name!r}")
                state[layer.id] = 1
            if i < len(layer.inputs):
                stack.append((layer, i + 1))
                producer = by_id[layer.inputs[i][0]]
                if state.get(producer.id) != 2:
                    stack.append((producer, 0))
            else:
                state[layer.id] = 2
                order.append(layer)
    return order


# ----------------------------------------------------------------------------- module


class IRModule(torch.nn.Module):
    """An OpenVINO IR graph run with torch (see the module docstring).

    ``forward(*inputs)`` takes the Parameters in file order (tensors or arrays; batch N where
    the IR says 1) and returns the Results' tensors (one tensor when there is one Result, else
    a tuple). ``run(inputs, outputs=[...])`` returns a dict of named layers' outputs and
    computes only what they need."""

    def __init__(self, name: str, layers: list[Layer], weights: np.ndarray | None,
                 channels_last: bool = True):
        super().__init__()
        unsupported: dict[str, list[str]] = {}
        for layer in layers:
            if layer.type not in OPS and layer.type not in _SOURCES:
                unsupported.setdefault(layer.type, []).append(layer.name)
        if unsupported:
            detail = "; ".join(f"{t} (layers {', '.join(names[:3])}"
                               f"{', ...' if len(names) > 3 else ''})"
                               for t, names in sorted(unsupported.items()))
            raise UnsupportedOpError(f"IR {name!r} uses op types the torch interpreter does not "
                                     f"implement: {detail}; supported: "
                                     f"{', '.join(sorted([*OPS, *_SOURCES]))}")
        self.net_name = name
        self.layers = _topological(layers)
        self._by_name = {layer.name: layer for layer in self.layers}
        self.parameters_in = [layer for layer in layers if layer.type == "Parameter"]
        self.results = [layer for layer in layers if layer.type == "Result"]
        self._consts: dict[str, str] = {}  # layer id -> buffer name (floating constants)
        self._meta: dict[str, torch.Tensor] = {}  # layer id -> CPU tensor (integer constants)
        for layer in self.layers:
            if layer.type == "Const":
                value = self._read_const(layer, weights)
                if value.is_floating_point():
                    self._consts[layer.id] = f"c{layer.id}"
                    self.register_buffer(f"c{layer.id}", value)
                else:
                    self._meta[layer.id] = value
        #: single-number floating constants as Python floats (a PReLU's slope), read once here
        #: so that a run never waits on a GPU to read them
        self._scalars: dict[tuple[str, int], float] = {}
        for layer in self.layers:
            buffer = getattr(self, self._consts[layer.id]) if layer.id in self._consts else None
            if buffer is not None and buffer.numel() == 1:
                self._scalars[(layer.id, layer.output_ports[0])] = float(buffer)
        #: convolution inputs in NHWC memory (about 2x faster convolutions on CPUs, and what
        #: tensor cores want on GPUs); the same maths, other float rounding
        self.channels_last = channels_last
        self._plans: dict[tuple[str, ...], tuple[list[Layer], dict[str, list]]] = {}

    @staticmethod
    def _read_const(layer: Layer, weights: np.ndarray | None) -> torch.Tensor:
        kind = layer.attrs.get("element_type", "f32")
        if kind not in ELEMENT_TYPES:
            raise UnsupportedOpError(f"Const {layer.name!r}: element_type {kind}")
        shape = _attr_ints(layer.attrs, "shape")
        offset, size = int(layer.attrs.get("offset", 0)), int(layer.attrs.get("size", 0))
        if weights is None or offset + size > weights.size:
            raise ValueError(f"Const {layer.name!r}: bytes {offset}..{offset + size} are not in "
                             "the weights file")
        dtype = np.dtype(ELEMENT_TYPES[kind])
        array = np.frombuffer(weights, dtype=dtype, count=size // dtype.itemsize, offset=offset)
        array = array.reshape(shape).copy()
        if array.dtype == np.float16 or array.dtype == np.float64:
            array = array.astype(np.float32)
        elif array.dtype in (np.uint64, np.uint32, np.uint16):
            array = array.astype(np.int64)
        return torch.from_numpy(array)

    # -- which layers a run needs, and when each value can be dropped
    def _plan(self, outputs: tuple[str, ...]) -> tuple[list[Layer], dict[str, list]]:
        if outputs in self._plans:
            return self._plans[outputs]
        wanted = {self._resolve(name) for name in outputs}
        needed, stack = set(), [lid for lid, _ in wanted]
        by_id = {layer.id: layer for layer in self.layers}
        while stack:
            lid = stack.pop()
            if lid not in needed:
                needed.add(lid)
                stack.extend(src for src, _ in by_id[lid].inputs)
        steps = [layer for layer in self.layers if layer.id in needed]
        last_use: dict[tuple[str, int], str] = {}
        for layer in steps:
            for src in layer.inputs:
                last_use[src] = layer.id
        free: dict[str, list] = {}
        for key, lid in last_use.items():
            if key not in wanted and key[0] not in self._consts and key[0] not in self._meta:
                free.setdefault(lid, []).append(key)
        self._plans[outputs] = (steps, free)
        return steps, free

    def _resolve(self, name: str) -> tuple[str, int]:
        base, port = name, ""
        if name not in self._by_name and ":" in name:
            base, _, port = name.rpartition(":")
        layer = self._by_name.get(base)
        if layer is None:
            raise KeyError(f"no layer named {base!r} in IR {self.net_name!r}")
        if layer.type == "Result":
            return layer.inputs[0]
        ports = layer.output_ports
        return layer.id, int(port) if port else (ports[0] if ports else 0)

    def _float_like(self) -> tuple[torch.device, torch.dtype]:
        for buf in self.buffers():
            return buf.device, buf.dtype
        return torch.device("cpu"), torch.float32

    def _in_place(self, layer: Layer, args: list[torch.Tensor],
                  reusable: list[int]) -> list[torch.Tensor] | None:
        """The elementwise op written into one of its inputs that dies at this layer and that
        no other value shares (index in ``reusable``), or None when that does not apply. Saves
        a full-size allocation per op: about 4x faster elementwise ops on a CPU. Off while
        autograd records (an overwritten input may be needed for the backward pass)."""
        if torch.is_grad_enabled() and any(a.requires_grad for a in args):
            return None
        if layer.type == "PReLU" and 0 in reusable and layer.inputs[1] in self._scalars:
            return [F.leaky_relu(args[0], self._scalars[layer.inputs[1]], inplace=True)]
        if layer.type not in _IN_PLACE:
            return None
        method, commutative = _IN_PLACE[layer.type]
        for i in reusable:
            if i == 1 and not commutative:
                continue
            dst, other = args[i], args[1 - i]
            if (dst.is_floating_point() and other.dtype == dst.dtype
                    and other.device == dst.device
                    and torch.broadcast_shapes(dst.shape, other.shape) == dst.shape):
                return [getattr(dst, method)(other)]
        return None

    def run(self, inputs: Sequence[Any] | dict[str, Any],
            outputs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Run the graph; ``inputs`` in Parameter order (or by Parameter name), ``outputs``
        layer names (default: the Results' names). Returns ``{name: tensor}``."""
        names = tuple(outputs) if outputs else tuple(r.name for r in self.results)
        if isinstance(inputs, dict):
            inputs = [inputs[p.name] for p in self.parameters_in]
        if len(inputs) != len(self.parameters_in):
            raise ValueError(f"IR {self.net_name!r} takes {len(self.parameters_in)} inputs "
                             f"({', '.join(p.name for p in self.parameters_in)}), "
                             f"got {len(inputs)}")
        device, dtype = self._float_like()
        env: dict[tuple[str, int], torch.Tensor] = {}
        for layer, value in zip(self.parameters_in, inputs, strict=True):
            t = torch.as_tensor(value)
            env[(layer.id, layer.output_ports[0] if layer.output_ports else 0)] = (
                t.to(device, dtype) if t.is_floating_point() else t)
        steps, free = self._plan(names)
        owned: set[tuple[str, int]] = set()  # values no one else refers to (may be overwritten)
        for layer in steps:
            if layer.type == "Parameter":
                continue
            if layer.type == "Const":
                value = (getattr(self, self._consts[layer.id]) if layer.id in self._consts
                         else self._meta[layer.id])
                env[(layer.id, layer.output_ports[0])] = value
                continue
            args = [env[src] for src in layer.inputs]
            if self.channels_last and layer.type in _CONVOLUTIONS and args[0].dim() == 4:
                args[0] = args[0].contiguous(memory_format=torch.channels_last)
            dying = free.get(layer.id, ())
            reusable = [i for i, src in enumerate(layer.inputs)
                        if src in owned and src in dying and layer.inputs.count(src) == 1]
            try:
                results = (self._in_place(layer, args, reusable) if reusable else None) \
                    or OPS[layer.type](layer, *args)
            except UnsupportedOpError:
                raise
            except Exception as exc:
                shapes = ", ".join(str(tuple(a.shape)) for a in args)
                raise RuntimeError(f"{layer.type} layer {layer.name!r} failed on inputs of "
                                   f"shapes {shapes}: {exc}") from exc
            ports = layer.output_ports or [0]
            for port, value in zip(ports, results, strict=False):
                env[(layer.id, port)] = value
                if layer.type in _FRESH:
                    owned.add((layer.id, port))
            if layer.type not in _FRESH:  # its outputs may be views of its inputs: share them
                owned.difference_update(layer.inputs)
            for key in dying:
                env.pop(key, None)
                owned.discard(key)
        return {name: env[self._resolve(name)] for name in names}

    def forward(self, *inputs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.run(inputs)
        values = tuple(out.values())
        return values[0] if len(values) == 1 else values

    def extra_repr(self) -> str:
        return (f"net={self.net_name!r}, layers={len(self.layers)}, "
                f"inputs={[p.name for p in self.parameters_in]}, "
                f"outputs={[r.name for r in self.results]}")


def load_ir(xml_path: str | Path, bin_path: str | Path | None = None,
            channels_last: bool = True) -> IRModule:
    """An :class:`IRModule` from an IR ``.xml`` and its ``.bin`` (default: next to the XML,
    same stem). Raises :class:`UnsupportedOpError` naming any op type it cannot run.
    ``channels_last``: run convolutions on NHWC memory (see :class:`IRModule`)."""
    xml_path = Path(xml_path)
    bin_path = Path(bin_path) if bin_path is not None else xml_path.with_suffix(".bin")
    name, layers = parse_ir(xml_path)
    weights = np.fromfile(bin_path, dtype=np.uint8) if bin_path.exists() else None
    return IRModule(name, layers, weights, channels_last=channels_last)
