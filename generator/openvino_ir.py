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
  is loaded, not half-way through a run. The ops live in :mod:`generator.openvino_ir_ops`; this
  module parses the graph and runs it.
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

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from generator.openvino_ir_ops import (
    ELEMENT_TYPES,
    OPS,
    Layer,
    UnsupportedOpError,
    attr_ints,
)

__all__ = ["ELEMENT_TYPES", "OPS", "IRModule", "Layer", "UnsupportedOpError", "load_ir",
           "parse_ir"]

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
        shape = attr_ints(layer.attrs, "shape")
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
