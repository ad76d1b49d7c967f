"""``drum-performer export``: its parser and runner (torch is imported only when it runs)."""

from __future__ import annotations

from model.errors import need_torch


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="run folder -> ONNX model folder for the live loop (needs the train extra)")
    p.add_argument("--run", required=True, help="trained run folder")
    p.add_argument("--out", required=True, help="model folder to write (replaced only if parity passes)")
    p.add_argument("--data", help="training data, if the run has no attributes.json yet (default: the run's)")
    p.add_argument("--eval-json", help="eval report whose figures go into the metadata (default: RUN/eval/test.json)")
    p.set_defaults(func=run_export)


def run_export(a) -> int:
    need_torch("export")
    from export import exporter

    meta = exporter.export(a.run, a.out, data=a.data, eval_json=a.eval_json)
    par = meta["parity"]
    print(
        f"exported {a.run} -> {a.out}: parity ok ({par['samples']} samples x 3 modes, class mismatches "
        f"{par['class_mismatches']}, max velocity diff {par['max_velocity_diff']:.2e})"
    )
    return 0
