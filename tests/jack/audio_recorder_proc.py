"""An audio recorder JACK client, in a process of its own (as recorder_proc.py, for the same reasons).

``python audio_recorder_proc.py SERVER NAME OUT.npz SECONDS``: one audio input
``in``; every period's samples are copied into a preallocated buffer of
SECONDS (no allocation in the process callback), stamped with the server's
frame time of the period's first frame. Prints ``R <client name>`` once
active; when stdin closes it writes OUT.npz (``start``: the frame time of
the first sample kept, ``audio``: float32 samples, contiguous from ``start``;
``xruns``: how many the server reported, ``xrun_frames``: about when, ``gaps``: periods whose frame time
did not follow the previous one's, ``gap_frames``: (first frame missed, frames) of each, up to 256;
the samples there stay 0) and prints ``D``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys


def main(argv: list[str]) -> int:
    import jack
    import numpy as np

    server, name, out_path, seconds = argv
    gc.disable()
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    client = jack.Client(name, servername=server, no_start_server=True)
    port = client.inports.register("in")
    buf = np.zeros(int(float(seconds) * client.samplerate) + client.blocksize, dtype=np.float32)
    # np.zeros maps untouched zero pages; the first write to each would fault inside the process
    # callback, and with transparent huge pages that is 2 MB zeroed at once every 2**19 samples
    # (measured: xruns every 524,288 frames, the server naming this client). Touch every page now.
    buf.fill(1.0)
    buf.fill(0.0)
    state = {"start": None, "n": 0, "next": None, "gaps": 0, "xruns": 0}
    gap_at = np.zeros((256, 2), dtype=np.int64)  # (first frame missed, frames) of the first 256 gaps
    xrun_frames: list[int] = []

    def process(frames: int) -> None:
        base = client.last_frame_time
        if state["start"] is None:
            state["start"] = base
        elif base != state["next"]:
            if state["gaps"] < len(gap_at):
                gap_at[state["gaps"]] = (state["next"], base - state["next"])
            state["gaps"] += 1
        state["next"] = base + frames
        i = base - state["start"]
        if i >= 0 and i + frames <= len(buf):
            buf[i : i + frames] = port.get_array()
            state["n"] = i + frames

    def xrun(delay: float) -> None:
        state["xruns"] += 1
        xrun_frames.append(client.frame_time)  # told shortly after the fact: approximate

    client.set_process_callback(process)
    client.set_xrun_callback(xrun)
    client.activate()
    sys.stdout.write(f"R {client.name}\n")
    sys.stdout.flush()
    for _ in sys.stdin:
        pass
    client.deactivate()
    np.savez(out_path, start=np.int64(state["start"] or 0), audio=buf[: state["n"]],
             xruns=np.int64(state["xruns"]),
             xrun_frames=np.array(xrun_frames, dtype=np.int64), gaps=np.int64(state["gaps"]),
             gap_frames=gap_at[: min(state["gaps"], len(gap_at))])
    client.close()
    sys.stdout.write("D\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
