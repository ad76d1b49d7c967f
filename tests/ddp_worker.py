"""Launched by torchrun in tests/test_trainer.py: train the tiny preset, report this rank's weights."""

import hashlib
import sys
from pathlib import Path

from model.config import preset
from train import trainer


def main() -> None:
    data, run, out = sys.argv[1:4]
    cfg = preset("tiny")
    cfg.train.threads = 1
    res = trainer.train(data, Path(run), cfg)
    h = hashlib.sha256()
    for k, v in sorted(res.model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    Path(out, f"rank{res.rank}.sha256").write_text(h.hexdigest())


if __name__ == "__main__":
    main()
