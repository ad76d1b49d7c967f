"""The recorder's JACK client, in a process of its own.

Run by :class:`tests.jack.harness.Recorder` as
``python recorder_proc.py SERVER NAME EXACT(0|1) INPUT...``. The process callback
is Python and needs the GIL every period; in the test process it would compete
with the test thread and with garbage collection over a heap that holds torch
and ONNX Runtime, and a late callback loses that period's events. Here the only
other thread sleeps, and collection is off (nothing here makes cycles).

Protocol on stdout, one line each: ``R <client name>`` once ready, then
``E <frame> <input index> <hex bytes>`` per event and ``X <count>`` when the
xrun count changes. Closing stdin ends it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading


def main(argv: list[str]) -> int:
    import jack

    server, name, exact, *inputs = argv
    gc.disable()
    # The process callback waits for the GIL whenever this thread holds it; on a
    # loaded machine an ordinary-priority holder can be preempted for longer than
    # a period, and the callback then misses its cycle (priority inversion). As a
    # low realtime thread it is never preempted by ordinary load.
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    client = jack.Client(name, use_exact_name=exact == "1", servername=server, no_start_server=True)
    ports = [client.midi_inports.register(n) for n in inputs]
    buf: list[tuple[int, int, bytes]] = []  # append/del are single GIL-atomic list operations
    xruns = [0]

    def process(frames: int) -> None:
        base = client.last_frame_time
        for i, port in enumerate(ports):
            for offset, data in port.incoming_midi_events():
                buf.append((base + offset, i, bytes(data)))

    def xrun(delay: float) -> None:
        xruns[0] += 1

    client.set_process_callback(process)
    client.set_xrun_callback(xrun)
    client.activate()
    out = sys.stdout
    out.write(f"R {client.name}\n")
    out.flush()

    done = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    reported = 0
    while True:
        stopping = done.wait(0.01)
        n = len(buf)
        chunk = buf[:n]
        del buf[:n]
        lines = [f"E {f} {i} {d.hex()}\n" for f, i, d in chunk]
        if xruns[0] != reported:
            reported = xruns[0]
            lines.append(f"X {reported}\n")
        if lines:
            try:
                out.write("".join(lines))
                out.flush()
            except BrokenPipeError:
                break
        if stopping:
            break
    client.deactivate()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
