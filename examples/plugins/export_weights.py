"""Turn a network you trained yourself into a checkpoint the model hub imports (the plugin example, step 2).

Run from the repository root (a few seconds on a CPU)::

    .venv/bin/python examples/plugins/export_weights.py               # → var/exports/example-tiny-mlp.safetensors
    .venv/bin/python examples/plugins/export_weights.py --import-now  # … and register it in ATLAS_HOME right away

Then start the dashboard with the plugin, ``ATLAS_PLUGINS=examples/plugins/tiny_mlp.py bash scripts/dashboard.sh``,
and upload the two files under *Model hub → Import a checkpoint* (or use ``--import-now``, which calls the same
``import_checkpoint`` as the hub). The steps, for your own model:

1. register its class in a plugin module (``tiny_mlp.py`` here);
2. build an empty instance through the registry, ``build_model(name, **kwargs)``, so that it carries the
   architecture's name and JSON-able kwargs, and copy your trained weights into it with ``load_state_dict``;
3. ``save_checkpoint(model, meta, path)`` with ``meta`` naming at least the ``dataset`` it was trained on; ``name``,
   ``method``, ``norm``, ``eps``, ``hparams`` and ``metrics`` (``clean_acc``, ``robust_acc``) fill the hub's table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.models import ARCHS, build_model, load_plugins, save_checkpoint  # noqa: E402

PLUGIN = Path(__file__).with_name("tiny_mlp.py")
ARCH = "example_tiny_mlp"
ARCH_KWARGS = {"hidden": 32}
LR = 0.01


def train_your_model(steps: int, seed: int) -> nn.Module:
    """Stands in for your own training code: full-batch Adam on the digits training split, plain PyTorch."""
    torch.manual_seed(seed)
    model = ARCHS[ARCH](**ARCH_KWARGS)
    train = load_dataset("digits", "train")
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(train.x), train.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def measure(model: nn.Module, eps: float) -> dict[str, float]:
    """Clean accuracy and PGD-20 (ℓ∞) robust accuracy on the digits test split, the numbers the hub plots."""
    from core.attacks import PGD

    test = load_dataset("digits", "test")
    model.eval()
    with torch.no_grad():
        clean_acc = (model(test.x).argmax(dim=1) == test.y).float().mean().item()
    result = PGD(steps=20)(model, test.x, test.y, eps=eps, generator=torch.Generator().manual_seed(0))
    robust_acc = (~result.success).float().mean().item()
    return {"clean_acc": clean_acc, "robust_acc": robust_acc, "attack": "pgd-20", "eps": eps, "n": len(test.y)}


def export(out: Path, *, steps: int = 300, seed: int = 0, eps: float = 0.1) -> Path:
    """Train, copy the weights into a registry-built model, save; returns the ``.safetensors`` path."""
    trained = train_your_model(steps, seed)
    model = build_model(ARCH, **ARCH_KWARGS)
    model.load_state_dict(trained.state_dict())
    meta = {
        "name": "example tiny MLP (plugin)",
        "dataset": "digits",
        "method": "erm",
        "norm": "linf",
        "eps": eps,
        "seed": seed,
        "hparams": {"optimizer": "adam", "lr": LR, "steps": steps, "batch_size": "full", **ARCH_KWARGS},
        "metrics": measure(model, eps),
    }
    return save_checkpoint(model, meta, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/exports/example-tiny-mlp"),
                        help="checkpoint path without suffix (default var/exports/example-tiny-mlp)")
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--import-now", action="store_true",
                        help="also register the checkpoint in ATLAS_HOME, as the hub's Import button does")
    args = parser.parse_args()
    # A 2k-parameter network: more threads only add synchronisation (tens of times slower on a busy 2-core CPU).
    torch.set_num_threads(1)
    for report in load_plugins(str(PLUGIN)):
        if not report.ok:
            print(report.error, file=sys.stderr)
            return 1
    start = time.perf_counter()
    weights = export(args.out, steps=args.steps)
    print(f"wrote {weights} and {weights.with_suffix('.json')} in {time.perf_counter() - start:.1f} s")
    if args.import_now:
        from core.errors import AtlasError
        from core.store import Registry
        from core.store.imports import CLI_DELETE_HINT, import_checkpoint

        try:
            # The hub's checks and run id; a refusal names the terminal's way to delete a run, not the sidebar's.
            run = import_checkpoint(Registry(), weights.read_bytes(), weights.with_suffix(".json").read_bytes(),
                                    delete_hint=CLI_DELETE_HINT)
        except AtlasError as exc:
            print(f"import refused: {exc}", file=sys.stderr)
            return 1
        print(f"imported as run {run['id']} ({run['name']}); start the dashboard with "
              f"ATLAS_PLUGINS={PLUGIN.relative_to(ROOT)} to see it in the model hub")
    return 0


if __name__ == "__main__":
    sys.exit(main())
