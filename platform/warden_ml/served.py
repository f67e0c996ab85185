"""The served form of a model: the same treatment for every tower and every stack.

A module is exported once to ONNX (its weights folded in) and run by ONNX Runtime on one
thread. At batch 1 a request is a few dozen small operators, and what a request costs is
mostly the per-operator overhead of the runtime that runs them: measured on these machines
(`tests/benchmarks/bench_request_graph.py`), ONNX Runtime runs the same requests in about half
to three quarters of the time of TorchScript (traced and frozen, the previous served form),
for the ViT and the CNN stacks alike. Outputs equal the eager module's to float
rounding (`tests/warden_ml/test_units.py`). Parameters and FLOPs are counted on the eager
module it came from.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

OPSET = 17


class Served:
    """A module's served form: call it with tensors shaped as the example was, get tensors
    back. The shapes are fixed at export (a dynamic batch axis measured ~40% slower for the
    ViT at batch 1: the runtime can no longer plan its reshapes ahead)."""

    def __init__(self, module: nn.Module, *example: torch.Tensor) -> None:
        names = [f"input{i}" for i in range(len(example))]
        model = io.BytesIO()
        with _exportable(), torch.no_grad():
            torch.onnx.export(
                module.eval(),
                tuple(example),
                model,  # type: ignore[arg-type]  # the TorchScript-based exporter takes a file
                input_names=names,
                opset_version=OPSET,
                custom_opsets={"com.microsoft": 1},  # ONNX Runtime's fused operators
                dynamo=False,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # served at one thread, as every arm is measured
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            model.getvalue(), options, providers=["CPUExecutionProvider"]
        )
        self._names = names
        self._last = [self._session.get_outputs()[-1].name]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.run(*inputs)[0]

    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Every output of the graph, in order."""
        arrays = [x.detach().contiguous().numpy() for x in inputs]
        return [torch.from_numpy(out) for out in self.run_numpy(*arrays)]

    def run_numpy(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """``run`` on numpy arrays, without the conversions (the per-request path)."""
        return self._session.run(None, dict(zip(self._names, inputs, strict=True)))

    def run_top(self, *inputs: np.ndarray) -> np.ndarray:
        """The graph's last output only (a request's top k: its scores are not copied out)."""
        return self._session.run(self._last, dict(zip(self._names, inputs, strict=True)))[0]


def served(module: nn.Module, *example: torch.Tensor) -> Served:
    return Served(module, *example)


@contextlib.contextmanager
def _exportable() -> Iterator[None]:
    """The fused transformer kernel PyTorch picks for inference has no ONNX form: export the
    layers' plain operators (the same math) instead, and keep the exporter's notices quiet."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)
