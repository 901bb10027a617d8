"""GPU entry script: a small neural network scores each row, on a GPU when there is one.

The backend is the first of these that imports: PyTorch (on ``cuda:0`` when
``torch.cuda.is_available()``), ONNX Runtime (``CUDAExecutionProvider`` when available;
needs ``onnx`` to build the model), NumPy (CPU). Every backend computes the same network
from the same seeded weights, so the scores agree whichever one ran.

daskprs gives each runner its own GPU in ``CUDA_VISIBLE_DEVICES``, so ``cuda:0`` here is
this runner's GPU, never another runner's. ``run()`` cuts its mini-batch into
``--batch-size`` rows per forward pass: the mini-batch (``mini_batch_size``) decides how
much work one task carries, the batch size how much the GPU holds at once.

Arguments: ``--batch-size 4096``, ``--hidden 256``, ``--backend auto|torch|onnx|numpy``.
The input is a table with an ``id`` column and feature columns named ``f0``, ``f1``, ...
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd

from azureml_user.parallel_run import EntryScript

SEED = 0


def init():
    global ARGS, MODELS
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "numpy"])
    ARGS, _ = parser.parse_known_args()
    MODELS = {}  # one per input width, built at the first mini-batch of that width
    EntryScript().logger.info("CUDA_VISIBLE_DEVICES=%r, backend %s",
                              os.environ.get("CUDA_VISIBLE_DEVICES"), ARGS.backend)


def run(mini_batch):
    features = mini_batch[[c for c in mini_batch.columns if str(c).startswith("f")]]
    rows = features.to_numpy(dtype=np.float32)
    model = MODELS.get(rows.shape[1])
    if model is None:
        model = MODELS[rows.shape[1]] = build_model(rows.shape[1], ARGS.hidden, ARGS.backend)
        EntryScript().logger.info("model for %d features on %s", rows.shape[1], model.where)
    scores = [model(rows[start:start + ARGS.batch_size])
              for start in range(0, len(rows), ARGS.batch_size)]
    return pd.DataFrame({"id": mini_batch["id"].to_numpy(),
                         "score": np.concatenate(scores) if scores else np.empty(0)})


def weights(width, hidden):
    """The network's weights: width -> hidden (ReLU) -> 1 (sigmoid), seeded."""
    rng = np.random.default_rng(SEED)
    return (rng.normal(0, width ** -0.5, (width, hidden)).astype(np.float32),
            np.zeros(hidden, np.float32),
            rng.normal(0, hidden ** -0.5, (hidden, 1)).astype(np.float32),
            np.zeros(1, np.float32))


def build_model(width, hidden, backend="auto"):
    """A callable from rows (float32, n x width) to n scores; ``.where`` says where it
    runs."""
    order = ["torch", "onnx", "numpy"] if backend == "auto" else [backend]
    for name in order:
        try:
            return BUILDERS[name](*weights(width, hidden))
        except ImportError:
            if backend != "auto":
                raise
    raise ImportError("no backend")


def _torch_model(w1, b1, w2, b2):
    import torch

    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    tensors = [torch.from_numpy(w).to(device) for w in (w1, b1, w2, b2)]

    def score(rows):
        with torch.inference_mode():
            x = torch.from_numpy(rows).to(device, non_blocking=True)
            hidden = torch.relu(x @ tensors[0] + tensors[1])
            return torch.sigmoid(hidden @ tensors[2] + tensors[3])[:, 0].cpu().numpy()

    score.where = f"torch {device}" + (f" ({torch.cuda.get_device_name(0)})"
                                       if device.type == "cuda" else "")
    return score


def _onnx_model(w1, b1, w2, b2):
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(w, name) for w, name in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]),
             helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]),
             helper.make_node("MatMul", ["h2", "w2"], ["o0"]),
             helper.make_node("Add", ["o0", "b2"], ["o1"]),
             helper.make_node("Sigmoid", ["o1"], ["y"])]
    graph = helper.make_graph(
        nodes, "score", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                       [None, w1.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p for p in wanted if p in onnxruntime.get_available_providers()]
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=providers)
    onnx.checker.check_model(model)

    def score(rows):
        return session.run(["y"], {"x": rows})[0][:, 0]

    score.where = f"onnxruntime {session.get_providers()[0]}"
    return score


def _numpy_model(w1, b1, w2, b2):
    def score(rows):
        hidden = np.maximum(rows @ w1 + b1, 0)
        return (1 / (1 + np.exp(-(hidden @ w2 + b2))))[:, 0]

    score.where = "numpy cpu"
    return score


BUILDERS = {"torch": _torch_model, "onnx": _onnx_model, "numpy": _numpy_model}
