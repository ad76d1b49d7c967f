"""How hot should a learned fill bar be drawn, and how strong should the fill input be?

Measured on the validation split (the test split stays for the final report).
For each (fill strength, fill temperature), ``--samples`` prior grooves of style
"any" plus ``--per-style`` of every style are decoded with the fill input on bar
4 (bars 1-3 at the product temperature; the fill bar at ``max(temperature, fill
temperature)``, as the engine draws it) and bar 4 is compared with bar 4 of the
real validation fill windows:

- ``bar4_fill``: the fill judge (a fill/beat bar classifier trained on GMD's
  training fill and beat bars, train/judges.py) calls bar 4 a fill;
- ``bar4_steps``, ``bar4_toms_crash``: sounding steps and tom + crash hits of bar 4;
- ``steps_oa``: overlapping area of the sounding-steps distribution with the
  real fill bars' (1 = the same spread of sparse and busy fills);
- ``bar4_sparse``: bar 4 has at most 2 sounding steps (a break, heard as "the
  drummer stopped"); ``worst_style_sparse``: the same for the worst style;
- ``bar4_played_fill``: judged a fill and not sparse.

    python -m benchmarks.fill_choice --data PATH/groove --json benchmarks/results/fill_choice.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from model import drums
from model.sampling import gumbel
from performer.engine import Engine
from train import data, evaluate, judges, prior


def decode_fills(engine: Engine, n: int, style: int, temperature: float, strength: float, fill_temperature: float,
                 seed: int, batch: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, V) hits and velocities of prior samples with the fill input on bar 4."""
    rng = np.random.default_rng((seed, style))  # the same z and noise for every setting
    arrays = dict(zip(("weights", "means", "scales"), engine.prior_mixture, strict=True))
    fill = np.zeros((1, drums.BARS), np.float32)
    fill[0, -1] = strength
    hits, vel = [], []
    for a in range(0, n, batch):
        k = min(batch, n - a)
        z = prior.draw(arrays, style, rng, k)
        noise = gumbel(rng, (k, drums.STEPS, drums.NUM_CLASSES))
        c, v, _ = engine.decode(z, temperature, noise, style=style, fill=np.broadcast_to(fill, (k, drums.BARS)),
                                fill_temperature=fill_temperature)
        hits.append(drums.index_to_hits(c))
        vel.append(v)
    return np.concatenate(hits), np.concatenate(vel)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="exported model folder (default: the shipped one)")
    ap.add_argument("--data", required=True, help="the GMD folder")
    ap.add_argument("--samples", type=int, default=400, help="samples of style 'any' per setting")
    ap.add_argument("--per-style", type=int, default=60, help="samples of every style per setting")
    ap.add_argument("--strengths", default="1.0,1.5,2.0")
    ap.add_argument("--fill-temperatures", default="0.5,0.75,1.0,1.25")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    engine = Engine.load(a.model)
    if not engine.has_fills or engine.prior_mixture is None:
        ap.error(f"{engine.folder}: the model needs fills and a learned prior")
    temp = engine.default_temperature
    tracks, _ = data.preprocess(a.data)
    tr = data.WindowSet(tracks["train"], engine.styles)
    va = data.WindowSet(tracks["validation"], engine.styles)
    judge = judges.Softmax.fit(*judges.fill_training_bars(tr, np.random.default_rng(a.seed)), ("beat", "fill"))

    def judged(hits, vel):
        return judges.bars_are_fills(judge, hits, vel)[:, -1]

    real_hits, real_vel = va.hits[va.is_fill] > 0.5, va.velocity[va.is_fill]
    real_steps = evaluate.last_bar_steps(real_hits)
    real_judged = judged(real_hits, real_vel)
    rows = {"validation fill bars (real)": {"bar4_fill": float(real_judged.mean()),
                                            **evaluate.last_bar_density(real_hits, real_judged), "steps_oa": 1.0}}
    t0 = time.perf_counter()
    for strength in (float(x) for x in a.strengths.split(",")):
        for ft in (float(x) for x in a.fill_temperatures.split(",")):
            hits, vel = decode_fills(engine, a.samples, 0, temp, strength, ft, a.seed)
            verdict = judged(hits, vel)
            row = {"bar4_fill": float(verdict.mean()), **evaluate.last_bar_density(hits, verdict),
                   "steps_oa": evaluate.overlap_area(evaluate.last_bar_steps(hits), real_steps)}
            worst = 0.0
            for s in range(1, len(engine.styles) + 1):
                sh, sv = decode_fills(engine, a.per_style, s, temp, strength, ft, a.seed)
                worst = max(worst, evaluate.last_bar_density(sh, judged(sh, sv))["bar4_sparse"])
            row["worst_style_sparse"] = worst
            rows[f"strength {strength:g}, fill temperature {ft:g}"] = row
    keys = ("bar4_fill", "bar4_played_fill", "bar4_sparse", "worst_style_sparse", "bar4_steps", "bar4_toms_crash", "steps_oa")
    print(f"groove temperature {temp}; {a.samples} samples ('any') + {a.per_style} per style per setting; "
          f"{len(real_hits)} real validation fill windows; {time.perf_counter() - t0:.0f} s")
    print(f"{'setting':40s}" + "".join(f"{k:>19s}" for k in keys))
    for name, r in rows.items():
        print(f"{name:40s}" + "".join(f"{r[k]:19.3f}" if k in r else f"{'-':>19s}" for k in keys))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": str(engine.folder), "temperature": temp, "samples": a.samples,
                       "per_style": a.per_style, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
