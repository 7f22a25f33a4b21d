"""CUDA graphs for an iterative attack's inner loop: record every step once, replay it with one launch.

On a GPU, PGD of a small network at a training batch is bound by the host, not the GPU: for PreAct-ResNet-18 at
batch 128 on an H100 a PGD-10 batch launches about 1,600 kernels and the GPU is busy only about 40 % of the time
(``bench/gpu_profile.py``). A CUDA graph records the loop — the forward passes, the input-gradient backward passes
and the projected steps — and replays it as one unit, so the host no longer paces the GPU.

Used only where it is safe and pays:

* a CUDA device, and ``ATLAS_CUDA_GRAPHS`` not set to ``0``;
* the same model weights (storage), input shape, dtype, layout, precision and bounds seen before: the first call
  with a key runs eagerly, the second records the graph (its result comes from a warm-up pass run eagerly on a side
  stream), later ones replay it. One-off calls (an example in the Attack Lab) never pay for a capture;
* nothing in the loop waits for the GPU (a capture that fails — a model whose forward pass reads a number off the
  GPU, say — is logged once and the attack runs eagerly from then on).

The random start is drawn outside the graph, with the caller's generator, so the random streams stay the eager
ones; the graph reads the weights where they are, so an optimiser that updates them in place (every optimiser of
the training loop) is seen by the next replay. Under autocast the graph runs with autocast's weight cache off, as
CUDA graphs require.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from typing import Any, Callable

import torch
from torch import nn

log = logging.getLogger(__name__)

# Graphs kept per attack (least recently used dropped first): a training run needs two (its full batch and its
# last, partial one); each holds its own activation memory.
MAX_GRAPHS = 4

Loop = Callable[..., tuple[torch.Tensor, ...]]


def enabled(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get("ATLAS_CUDA_GRAPHS", "1") != "0"


def _autocast_state(device: torch.device) -> tuple[bool, Any]:
    on = torch.is_autocast_enabled(device.type)
    return on, torch.get_autocast_dtype(device.type) if on else None


def _no_weight_cache(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Autocast as the caller set it, with the weight cache off (cached casts would be stale on replay)."""
    on, dtype = _autocast_state(device)
    if not on:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


class _Graph:
    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: tuple[torch.Tensor, ...],
                 outputs: tuple[torch.Tensor, ...]) -> None:
        self.graph, self.inputs, self.outputs = graph, inputs, outputs

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for static, value in zip(self.inputs, inputs):
            static.copy_(value)
        self.graph.replay()
        # The outputs' memory is rewritten by the next replay: hand out copies.
        return tuple(out.clone() for out in self.outputs)


class GraphCache:
    """Per-attack cache of recorded loops, keyed by everything the recording depends on."""

    def __init__(self) -> None:
        self.graphs: OrderedDict[tuple[Any, ...], _Graph] = OrderedDict()
        self.seen: set[tuple[Any, ...]] = set()
        self.broken = False
        self.captures = 0
        self.replays = 0
        self.lock = threading.Lock()

    def run(self, loop: Loop, model: nn.Module, inputs: tuple[torch.Tensor, ...], extra: tuple[Any, ...]) -> (
            tuple[torch.Tensor, ...]):
        """``loop(*inputs)``: eagerly, recorded, or replayed (see the module's docstring). ``extra`` names the
        settings the loop depends on beyond the tensors' shapes (bounds, precision)."""
        device = inputs[0].device
        if self.broken or not enabled(device) or torch.cuda.is_current_stream_capturing():
            return loop(*inputs)
        # One thread at a time replays or records (the inputs are copied into shared buffers); another runs eagerly.
        if not self.lock.acquire(blocking=False):
            return loop(*inputs)
        try:
            return self._run(loop, model, inputs, extra)
        finally:
            self.lock.release()

    def _run(self, loop: Loop, model: nn.Module, inputs: tuple[torch.Tensor, ...], extra: tuple[Any, ...]) -> (
            tuple[torch.Tensor, ...]):
        key = self._key(model, inputs, extra)
        graph = self.graphs.get(key)
        if graph is not None:
            self.graphs.move_to_end(key)
            self.replays += 1
            return graph(*inputs)
        if key not in self.seen:
            self.seen.add(key)
            return loop(*inputs)
        return self._capture(key, loop, inputs)

    @staticmethod
    def _key(model: nn.Module, inputs: tuple[torch.Tensor, ...], extra: tuple[Any, ...]) -> tuple[Any, ...]:
        weights = tuple(t.data_ptr() for t in (*model.parameters(), *model.buffers()))
        tensors = tuple((t.shape, t.dtype, t.stride(), t.device) for t in inputs)
        return id(model), weights, tensors, _autocast_state(inputs[0].device), torch.is_grad_enabled(), extra

    def _capture(self, key: tuple[Any, ...], loop: Loop, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        device = inputs[0].device
        static = tuple(t.clone() for t in inputs)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), _no_weight_cache(device):
            result = loop(*static)  # the warm-up pass is this call's answer
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: CUDA calls of the app's other threads (another session's attack) do not break the capture.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"), _no_weight_cache(device):
                outputs = loop(*static)
        except RuntimeError as exc:
            self.broken = True
            log.warning("CUDA graph capture of %s failed (%s); the attack runs without graphs from now on",
                        getattr(loop, "__qualname__", "the attack loop"), str(exc).splitlines()[0])
            return result
        self.captures += 1
        self.graphs[key] = _Graph(graph, static, outputs)
        while len(self.graphs) > MAX_GRAPHS:
            self.graphs.popitem(last=False)
        return result
