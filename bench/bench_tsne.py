"""t-SNE iterations on the Latent page: the product's TSNE_ITERATIONS against scikit-learn's default 1000.

Usage: python bench/bench_tsne.py [--repeats 3] [--out bench/RESULTS.md]

The points the Latent page embeds by default: penultimate features of the shipped digits PGD-AT model for 450 test
points and their PGD-10 points at ε = 0.05, 0.1, 0.2 (1,800 points, one joint fit). Product and peer (the same
call with max_iter=1000) alternate per repeat. Quality: the final KL divergence and sklearn's trustworthiness
(how well the 10 nearest neighbours in the map are neighbours in feature space; 1 is perfect).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import numpy as np
    import torch
    from sklearn.manifold import TSNE, trustworthiness

    from core.attacks import PGD
    from core.data import load_dataset
    from core.latent.hooks import PENULTIMATE, extract_features
    from core.latent.projection import TSNE_ITERATIONS
    from core.models import load_checkpoint

    model, _ = load_checkpoint(ROOT / "assets" / "models" / "digits-smallcnn-pgd-at")
    test = load_dataset("digits", "test")
    x, y = test.x[:450], test.y[:450]
    feats = [extract_features(model, x, PENULTIMATE).numpy()]
    for eps in (0.05, 0.1, 0.2):
        x_adv = PGD(steps=10)(model, x, y, eps, generator=torch.Generator().manual_seed(0)).x_adv
        feats.append(extract_features(model, x_adv, PENULTIMATE).numpy())
    points = np.concatenate(feats)
    perplexity = float(min(30.0, (len(points) - 1) / 3))
    runs: dict[int, dict[str, list[float]]] = {TSNE_ITERATIONS: {}, 1000: {}}
    for rep in range(args.repeats):
        for iterations in (runs if rep % 2 == 0 else list(runs)[::-1]):
            start = time.perf_counter()
            tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=rep, max_iter=iterations)
            xy = tsne.fit_transform(points)
            seconds = time.perf_counter() - start
            record = runs[iterations]
            record.setdefault("s", []).append(seconds)
            record.setdefault("kl", []).append(float(tsne.kl_divergence_))
            record.setdefault("trust", []).append(float(trustworthiness(points, xy, n_neighbors=10)))
    product, peer = runs[TSNE_ITERATIONS], runs[1000]
    ratio = statistics.median(p / q for p, q in zip(peer["s"], product["s"]))
    rows = [f"| {label} | {statistics.median(r['s']):.1f} s | {statistics.median(r['kl']):.3f} | "
            f"{statistics.median(r['trust']):.4f} |" for label, r in
            ((f"{TSNE_ITERATIONS} iterations (product)", product), ("1000 iterations (scikit-learn default, peer)",
                                                                   peer))]
    emit(["", f"### t-SNE iterations (Latent page) — {time.strftime('%Y-%m-%d')}, `python bench/bench_tsne.py "
          f"--repeats {args.repeats}`, {len(points)} points × {points.shape[1]} features, torch "
          f"{torch.__version__}", "", "| fit | time, median | KL divergence | trustworthiness (10-NN) |",
          "|---|---|---|---|", *rows, "", f"Peer ÷ product time, median of per-repeat ratios: **{ratio:.2f}×**."],
         args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
