"""Tracing a farm sampler module to one graph: ONNX (opset 17, checked) or TorchScript.

Shared by the voxel and point-cloud exports (farm.export.voxels, farm.export.points): the
tolerance the exported graph must meet against farm's own sampler, the size of the reference,
and `write_graph`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

ONNX_OPSET = 17
TOLERANCE = {"rtol": 1e-4, "atol": 1e-3}
"""fp32 agreement of the exported graph with farm's sampler: |exported - farm| <= atol + rtol |farm|
(events in MeV; the graph's operations are reordered and fused, and ONNX Runtime evaluates
erf in float32)."""
REFERENCE_EVENTS = 8


def _erf_in_float32(path: Path) -> None:
    """Evaluate double-precision Erf nodes in float32 (ONNX Runtime has no double Erf kernel)."""
    import onnx
    from onnx import TensorProto, helper, shape_inference

    graph_model = onnx.load(str(path))
    inferred = shape_inference.infer_shapes(graph_model).graph
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.value_info, *inferred.input, *inferred.output]
    }
    nodes = []
    for node in graph_model.graph.node:
        if node.op_type != "Erf" or types.get(node.input[0]) != TensorProto.DOUBLE:
            nodes.append(node)
            continue
        x32, y32 = f"{node.input[0]}_f32", f"{node.output[0]}_f32"
        nodes += [
            helper.make_node("Cast", [node.input[0]], [x32], to=TensorProto.FLOAT),
            helper.make_node("Erf", [x32], [y32]),
            helper.make_node("Cast", [y32], [node.output[0]], to=TensorProto.DOUBLE),
        ]
    del graph_model.graph.node[:]
    graph_model.graph.node.extend(nodes)
    onnx.checker.check_model(graph_model, full_check=True)
    onnx.save(graph_model, str(path))


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    """nn.MultiheadAttention's fused inference kernel off (it has no ONNX export), then restored."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def write_graph(
    module,
    fmt: str,
    path: Path,
    example: tuple[torch.Tensor, ...],
    names: tuple[tuple[str, ...], tuple[str, ...]] = (("noise", "conditions"), ("events",)),
) -> None:
    """Trace the module to model.onnx (checked by onnx.checker) or model.pt (torch.jit.trace).

    `names` are the graph's (inputs, outputs), all with a free batch axis 0.
    """
    with warnings.catch_warnings(), _mha_fastpath_off():
        warnings.simplefilter("ignore")  # tracer warnings: the loops are meant to unroll
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(path))
            return
        inputs, outputs = names
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes={name: {0: "batch"} for name in (*inputs, *outputs)},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    _erf_in_float32(path)
