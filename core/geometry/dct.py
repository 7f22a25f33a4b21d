"""Margins along DCT frequency subspaces ("Hold me tight!").

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Hold me tight! Influence of discriminative features on
deep network boundaries", NeurIPS 2020, https://arxiv.org/abs/2002.06349 (METHODS.md §1e, authors' code): the
subspaces are K×K blocks of orthonormal 2-D DCT atoms (DCT-II, norm='ortho') sliding along the diagonal from low
to high frequency; colour channels share the block (a Kronecker product with the identity). The margin in a
subspace S is the norm of the subspace-constrained DeepFool perturbation (every w_k projected to S·Sᵀ·w_k, at most
100 iterations, overshoot 0.02). A point that does not flip within the iterations is *invariant* along S: its
margin is reported as +inf and counted, never mixed into the medians as a finite number. So is a flip found only
beyond the diameter of the input box (‖r‖₂ > √d·(hi − lo)): along an (almost) invariant subspace the linearised
step divides by ‖S·Sᵀ·w‖ ≈ 0 and "converges" at a meaningless size.

All (image, subspace) pairs run as one batched DeepFool: a row's projection is "DCT, keep its block's
coefficients, inverse DCT", so one d×d transform serves every subspace. The input is not clipped to [0,1] (the
authors do not clip either; clipping would take the perturbation out of its subspace), so these margins measure
the boundary of the network as a function on ℝ^d. Example::

    spec = DCTMarginSpec(run_id="shipped-digits-smallcnn-erm", dataset="digits", n=100)
    result = dct_margins(spec, registry=Registry())
    result.medians, result.q25, result.q75      # per subspace, low → high frequency (inf: mostly invariant)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from core.attacks.base import check_int, check_positive
from core.attacks.deepfool import deepfool_run
from core.data import DATASETS, Dataset
from core.errors import ConfigError
from core.geometry.analysis import (Analysis, AnalysisResult, Progress, ShouldStop, analysis, cancel_check,
                                    check_common, quantiles)

MAX_N = 500
MAX_ROWS_PER_BATCH = 2048  # (image, subspace) rows attacked at once


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The orthonormal 1-D DCT-II matrix D (n×n, rows are frequencies): D·x = scipy.fft.dct(x, norm='ortho')."""
    check_int("DCT size", n)
    k = torch.arange(n, dtype=dtype).unsqueeze(1)
    i = torch.arange(n, dtype=dtype).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


def dct_basis(height: int, width: int, channels: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All 2-D DCT atoms of a C×H×W input as the rows of a d×d orthonormal matrix (d = C·H·W).

    Row ``c·H·W + u·W + v`` is the atom of frequency (u, v) in channel c (zero in the other channels), so
    ``basis @ x.flatten()`` are the DCT coefficients (scipy.fft.dctn(x, axes=(-2, -1), norm='ortho') per channel).
    """
    atoms = torch.kron(dct_matrix(height), dct_matrix(width))
    return torch.kron(torch.eye(channels, dtype=atoms.dtype), atoms).to(dtype)


def diagonal_blocks(size: int, block: int, step: int) -> list[int]:
    """Start frequency of each K×K block on the diagonal of a size×size DCT grid, low → high (size=28, K=8,
    step 1 → 21 blocks). The last block always ends at the highest frequency."""
    if block > size:
        raise ConfigError(f"a {block}×{block} DCT block does not fit a {size}×{size} image")
    starts = list(range(0, size - block + 1, step))
    if starts[-1] != size - block:
        starts.append(size - block)
    return starts


def block_masks(input_shape: tuple[int, ...], block: int, step: int) -> torch.Tensor:
    """Boolean S×d masks over the coefficients of :func:`dct_basis`: which atoms span each diagonal block."""
    channels, height, width = image_shape(input_shape)
    size = min(height, width)
    masks = []
    for start in diagonal_blocks(size, block, step):
        grid = torch.zeros(height, width, dtype=torch.bool)
        grid[start:start + block, start:start + block] = True
        masks.append(grid.flatten().repeat(channels))
    return torch.stack(masks)


def subspace_basis(input_shape: tuple[int, ...], block: int, step: int, index: int) -> torch.Tensor:
    """The orthonormal d×m basis S of diagonal block ``index`` (m = C·K²): columns are DCT atoms."""
    channels, height, width = image_shape(input_shape)
    mask = block_masks(input_shape, block, step)[index]
    return dct_basis(height, width, channels)[mask].T.contiguous()


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ConfigError(f"DCT subspaces need image inputs (C×H×W); this dataset's inputs have shape "
                          f"{tuple(input_shape)}")
    c, h, w = (int(v) for v in input_shape)
    return c, h, w


class BlockProjector:
    """Projector for :func:`core.attacks.deepfool.deepfool_run`: row i keeps only the DCT coefficients of
    ``masks[row_subspace[i]]`` (P·w = Bᵀ·(mask ⊙ B·w) with the full orthonormal DCT basis B)."""

    def __init__(self, basis: torch.Tensor, masks: torch.Tensor, row_subspace: torch.Tensor) -> None:
        self.basis, self.masks, self.row_subspace = basis, masks, row_subspace

    def __call__(self, w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        basis = self.basis.to(dtype=w.dtype, device=w.device)
        keep = self.masks.to(w.device)[self.row_subspace.to(w.device)[rows]].unsqueeze(1).to(w.dtype)
        return ((w @ basis.T) * keep) @ basis


def box_diameter(data: Dataset) -> float:
    """√d·(hi − lo): no margin larger than this stays near the data (√d for unbounded data)."""
    span = 1.0 if data.bounds is None else data.bounds[1] - data.bounds[0]
    return float(math.sqrt(data.x[0].numel()) * span)


@dataclass(frozen=True, kw_only=True)
class DCTMarginSpec:
    """What to measure (hashable; its id, with the run's weights, names the stored result). ``block=None`` and
    ``step=None`` pick the paper's 8×8 blocks with step 1 on images of side ≥ 16, else half the side, step 1
    (8×8 digits → 4×4 blocks, 5 subspaces)."""

    kind: ClassVar[str] = "dct"

    run_id: str
    dataset: str
    split: str = "test"
    n: int = 100
    block: int | None = None
    step: int | None = None
    steps: int = 100
    overshoot: float = 0.02
    candidates: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_common(self)
        for name in ("block", "step"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name))
        check_int("steps", self.steps)
        check_int("candidates", self.candidates, low=2)
        check_positive("overshoot", self.overshoot, allow_zero=True)
        static = DATASETS[self.dataset]
        if static.kind != "image":
            raise ConfigError(f"DCT subspaces need image inputs; {self.dataset} is a {static.kind} dataset")
        self.layout(static.input_shape)

    def layout(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        """(block, step) for this input shape, refusing a block that does not fit."""
        _, height, width = image_shape(input_shape)
        size = min(height, width)
        block = self.block if self.block is not None else (8 if size >= 16 else max(1, size // 2))
        step = self.step if self.step is not None else 1
        if block > size:
            raise ConfigError(f"a {block}×{block} DCT block does not fit {height}×{width} images")
        return block, step

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class DCTMargins(AnalysisResult):
    """Per point and subspace (S subspaces, low → high frequency). ``margin``: ‖r‖₂ of the subspace-constrained
    DeepFool perturbation, +inf where it did not converge or only beyond ``info["cap"]`` (invariance);
    ``converged``: DeepFool's own flip flag. medians/q25/q75 over the correctly classified points, inf included
    (an inf median means most points are invariant along that subspace); ``invariant`` counts their infs."""

    indices: np.ndarray       # N, into the split
    y: np.ndarray             # N
    pred: np.ndarray          # N
    starts: np.ndarray        # S, first frequency of each block
    margin: np.ndarray        # N × S, +inf where not converged
    converged: np.ndarray     # N × S
    iterations: np.ndarray    # N × S
    full_margin: np.ndarray   # N, unconstrained DeepFool ℓ2 margin (same settings), +inf where not converged
    medians: np.ndarray       # S
    q25: np.ndarray           # S
    q75: np.ndarray           # S
    invariant: np.ndarray     # S, count of inf margins over the correctly classified points
    info: dict[str, Any] = field(default_factory=dict)


def compute_dct_margins(model: nn.Module, data: Dataset, spec: DCTMarginSpec, *,
                        on_progress: Progress | None = None, should_stop: ShouldStop | None = None) -> DCTMargins:
    """Subspace-constrained DeepFool for every (point of ``data``, diagonal DCT block), plus the unconstrained
    margin as the reference line; ``data`` is already the sample."""
    start_t = time.perf_counter()
    block, step = spec.layout(data.input_shape)
    c, h, w = image_shape(data.input_shape)
    masks = block_masks(data.input_shape, block, step)
    device = next(model.parameters()).device
    basis = dct_basis(h, w, c).to(device)
    n, s = len(data), len(masks)
    x = data.x.to(device)
    rows_x = x.repeat_interleave(s, dim=0)
    row_subspace = torch.arange(s).repeat(n)
    total = n * s + n
    cap = box_diameter(data)
    margin = np.full(n * s, np.inf)
    converged = np.zeros(n * s, dtype=bool)
    iterations = np.zeros(n * s, dtype=np.int64)
    done = 0
    for lo in range(0, n * s, MAX_ROWS_PER_BATCH):
        hi = min(lo + MAX_ROWS_PER_BATCH, n * s)
        projector = BlockProjector(basis, masks, row_subspace[lo:hi])
        tick = cancel_check(on_progress, should_stop, done, hi - lo, total, spec.steps, "subspace DeepFool")
        run = deepfool_run(model, rows_x[lo:hi], norm="l2", steps=spec.steps, overshoot=spec.overshoot,
                           candidates=spec.candidates, bounds=None, projector=projector, on_iteration=tick)
        norms = run.r.flatten(1).norm(dim=1).cpu().numpy().astype(np.float64)
        ok = run.converged.cpu().numpy()
        margin[lo:hi] = np.where(ok & (norms <= cap), norms, np.inf)
        converged[lo:hi], iterations[lo:hi] = ok, run.iterations.cpu().numpy()
        done = hi
    tick = cancel_check(on_progress, should_stop, done, n, total, spec.steps, "unconstrained DeepFool")
    full = deepfool_run(model, x, norm="l2", steps=spec.steps, overshoot=spec.overshoot,
                        candidates=spec.candidates, bounds=None, on_iteration=tick)
    full_norms = full.r.flatten(1).norm(dim=1).cpu().double().numpy()
    full_margin = np.where(full.converged.cpu().numpy() & (full_norms <= cap), full_norms, np.inf)
    pred = full.pred.cpu().numpy()
    y = data.y.numpy()
    margin, converged = margin.reshape(n, s), converged.reshape(n, s)
    correct = pred == y
    stats = np.array([quantiles(margin[correct, j]) for j in range(s)]).reshape(s, 3)
    info = {"block": block, "step": step, "subspace_dim": int(masks[0].sum()), "input_dim": int(c * h * w),
            "n_correct": int(correct.sum()), "cap": cap, "seconds": time.perf_counter() - start_t,
            "full_median": float(quantiles(full_margin[correct])[1])}
    return DCTMargins(indices=np.arange(n), y=y, pred=pred, starts=np.array(diagonal_blocks(min(h, w), block, step)),
                      margin=margin, converged=converged, iterations=iterations.reshape(n, s),
                      full_margin=full_margin.astype(np.float64), q25=stats[:, 0], medians=stats[:, 1],
                      q75=stats[:, 2], invariant=np.isinf(margin[correct]).sum(axis=0), info=info)


def dct_margins(spec: DCTMarginSpec, *, registry: Any, model: nn.Module | None = None, device: str = "cpu",
                on_progress: Progress | None = None, should_stop: ShouldStop | None = None) -> DCTMargins:
    """The stored result of ``spec`` if the run's weights are unchanged since, else computed and stored."""
    return analysis(spec, registry=registry, model=model, device=device, on_progress=on_progress,
                    should_stop=should_stop)


ANALYSIS = Analysis(kind=DCTMarginSpec.kind, spec=DCTMarginSpec, result=DCTMargins, compute=compute_dct_margins,
                    max_n=MAX_N)
