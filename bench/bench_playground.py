"""Playground latency (issue: 2-D teaching Playground): restart → first frame, and time to converge on moons.

Usage: python bench/bench_playground.py [--repeats 5] [--out bench/RESULTS.md]

Everything runs in one warm process (the dashboard's situation: torch and the engine are imported once), after
one untimed warm-up pair. Medians over ``repeats``.

1. Restart → first frame: ``playground_runner.start_pair(config)`` with the default config (moons, ERM next to
   PGD-AT), until BOTH runs have published their first frame (data, two models, one training step each, grid
   probabilities and PGD verdicts on 600 points). Target ≤ 0.5 s. Peer, same run: the least work any first
   frame needs — build the same MLP, one plain full-batch ERM Adam step, one forward pass over the 80×80 grid.
2. Converged on moons: "converged" = held-out clean accuracy ≥ 0.95. (a) the default ERM run alone (frames
   every 0.2 s as on the page, the time is read at the first frame at or above 0.95); (b) the page's pair run to
   the end of its default schedule (300 steps each, interleaved in one thread), with ERM's final clean accuracy
   checked ≥ 0.95. Target ≤ 3 s. Peer, same run: a plain full-batch ERM Adam loop of the same MLP for the same
   number of steps as (a) needed, with no frames and no attacks.
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

CONVERGED = 0.95


def _wait(runs: dict, condition, timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while not condition(runs):
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the Playground pair did not get there in time")
        time.sleep(0.001)
    return time.perf_counter()


def first_frame_seconds(config) -> float:
    from dashboard import playground_runner as runner

    start = time.perf_counter()
    runs = runner.start_pair(config)
    end = _wait(runs, lambda r: all(run.frame is not None for run in r.values()))
    runner.stop_all(runs)
    _wait(runs, lambda r: all(run.done for run in r.values()))
    return end - start


def pair_done_seconds(config) -> tuple[float, float]:
    from dashboard import playground_runner as runner

    start = time.perf_counter()
    runs = runner.start_pair(config)
    end = _wait(runs, lambda r: all(run.done for run in r.values()))
    return end - start, runs["standard"].frame.clean_acc


def erm_converged_seconds(config) -> tuple[float, int]:
    from core.playground import iter_frames

    start = time.perf_counter()
    for frame in iter_frames(config):
        if frame.clean_acc >= CONVERGED:
            return time.perf_counter() - start, frame.step
    raise AssertionError(f"the default ERM run never reached clean accuracy {CONVERGED}")


def peer_first_frame(config) -> float:
    import torch

    from core.playground import build_mlp, grid_axis, load_data

    data = load_data(config)
    start = time.perf_counter()
    model = build_mlp(config, len(data.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss = torch.nn.functional.cross_entropy(model(data.train.x), data.train.y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    axis = torch.from_numpy(grid_axis(config.grid))
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    with torch.no_grad():
        model(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).softmax(1)
    return time.perf_counter() - start


def peer_plain_loop(config, steps: int) -> float:
    import torch

    from core.playground import build_mlp, load_data

    data = load_data(config)
    start = time.perf_counter()
    model = build_mlp(config, len(data.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(data.train.x), data.train.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    from core.playground import PlaygroundConfig

    torch.set_num_threads(1)
    pair = PlaygroundConfig(method="pgd-at")
    erm = PlaygroundConfig()
    pair_done_seconds(pair)  # warm-up: imports, allocator, first autograd graphs
    first, first_peer, conv, conv_steps, conv_peer, done, done_acc = [], [], [], [], [], [], []
    for _ in range(args.repeats):
        first.append(first_frame_seconds(pair))
        first_peer.append(peer_first_frame(pair))
        seconds, steps = erm_converged_seconds(erm)
        conv.append(seconds)
        conv_steps.append(steps)
        conv_peer.append(peer_plain_loop(erm, steps))
        seconds, acc = pair_done_seconds(pair)
        done.append(seconds)
        done_acc.append(acc)
    med = statistics.median
    verdict = lambda value, target: "pass" if value <= target else "**miss**"  # noqa: E731
    lines = [
        "", f"### Playground — {time.strftime('%Y-%m-%d')}, `python bench/bench_playground.py "
        f"--repeats {args.repeats}`", "",
        "| what (default settings, moons, median of %d) | Playground | peer (same run) | ratio | target | verdict |"
        % args.repeats, "|---|---|---|---|---|---|",
        f"| restart → first frame of both runs (ERM + PGD-AT) | {med(first):.3f} s | {med(first_peer):.4f} s "
        f"(build MLP + 1 ERM step + grid forward) | {med(first) / med(first_peer):.0f}× | ≤ 0.5 s | "
        f"{verdict(med(first), 0.5)} |",
        f"| ERM alone: start → first frame with held-out clean acc ≥ {CONVERGED} (step {int(med(conv_steps))}) | "
        f"{med(conv):.3f} s | {med(conv_peer):.4f} s (plain Adam loop, same steps, no frames) | "
        f"{med(conv) / med(conv_peer):.1f}× | ≤ 3 s | {verdict(med(conv), 3.0)} |",
        f"| page pair (ERM + PGD-AT, 300 steps each, one thread) → both done; ERM clean acc "
        f"{min(done_acc):.3f} | {med(done):.2f} s | — | — | ≤ 3 s | "
        f"{verdict(med(done), 3.0) if min(done_acc) >= CONVERGED else '**miss** (accuracy)'} |",
    ]
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
