"""How close is real GMD playing from one split to another, on eval's sample features?

The yardstick for ``eval``'s prior-sample overlap figures: a model that plays
exactly like the training data can score no better against the test split than
real training windows do. For the train and validation splits, ``--windows``
real beat windows (a seeded random subset) are scored against every test beat
window with the same overlapping-area features ``eval`` uses; each split's crash
rate and toms + crash per bar are printed beside them.

    python -m benchmarks.split_gap --data PATH/groove --json benchmarks/results/split_gap.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from train import data, evaluate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the GMD folder")
    ap.add_argument("--windows", type=int, default=1000, help="real windows of each split scored against the test split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    tracks, _ = data.preprocess(a.data)
    hits = {s: data.WindowSet(tracks[s], fills=False).hits > 0.5 for s in ("train", "validation", "test")}
    test_features = evaluate.features(hits["test"])
    rng = np.random.default_rng(a.seed)
    out = {}
    for split, h in hits.items():
        whole = test_features if split == "test" else evaluate.features(h)  # eval's own definitions
        row = {"windows": len(h), "crash_per_step": float(whole["density_crash"].mean()),
               "toms_crash_per_bar": float(whole["toms_crash_per_bar"].mean())}
        if split != "test":
            pick = rng.choice(len(h), min(a.windows, len(h)), replace=False)
            f = evaluate.features(h[pick])
            oa = {k: evaluate.overlap_area(f[k], test_features[k]) for k in test_features}
            row.update(oa_vs_test_mean=float(np.mean(list(oa.values()))), oa_vs_test=oa)
        out[split] = row
    for split, r in out.items():
        line = f"{split:10s} {r['windows']:6d} windows  crash/step {r['crash_per_step']:.4f}  toms+crash/bar {r['toms_crash_per_bar']:.2f}"
        if "oa_vs_test" in r:
            worst = min(r["oa_vs_test"], key=r["oa_vs_test"].get)
            line += (f"  vs test: mean OA {r['oa_vs_test_mean']:.3f}, crash density OA "
                     f"{r['oa_vs_test']['density_crash']:.3f}, lowest {worst} {r['oa_vs_test'][worst]:.3f}")
        print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
