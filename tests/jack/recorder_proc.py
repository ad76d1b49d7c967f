"""The recorder's JACK client, in a process of its own.

Run by :class:`tests.jack.harness.Recorder` as
``python recorder_proc.py SERVER NAME EXACT(0|1) CYCLES(0|1) PORT...``; a PORT written
``>NAME`` is a MIDI output instead, which sends what ``W <hex bytes>`` lines on
stdin ask for, one JACK event each, at the start of the next period. The process callback
is Python and needs the GIL every period; in the test process it would compete
with the test thread and with garbage collection over a heap that holds torch
and ONNX Runtime, and a late callback loses that period's events. Here the only
other thread sleeps, and collection is off (nothing here makes cycles).

Protocol on stdout, one line each: ``R <client name>`` once ready, then
``E <frame> <input index> <hex bytes>`` per event, ``X <count> <frame>`` per
xrun (the server's frame time when we were told), ``M <frame> <frames>`` per run of
cycles this client missed (their events are not recorded), ``D <frame>`` per second run
of the callback in one cycle after one that overran (only events the first run did not take are kept),
with CYCLES 1 ``C <frame> <ns>`` per cycle (its first frame, and CLOCK_MONOTONIC_RAW in ns when the
callback began: a wall time for the frames that is not the server's filtered estimate) and
``K <n>`` once everything stamped before the n-th ``S``
line on stdin has been written (a flush barrier). Closing stdin ends it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
import time


def main(argv: list[str]) -> int:
    import jack

    server, name, exact, cycles, *inputs = argv
    stamp = cycles == "1"
    raw = time.CLOCK_MONOTONIC_RAW
    gc.disable()
    # The process callback waits for the GIL whenever this thread holds it; on a
    # loaded machine an ordinary-priority holder can be preempted for longer than
    # a period, and the callback then misses its cycle (priority inversion). As a
    # low realtime thread it is never preempted by ordinary load.
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    client = jack.Client(name, use_exact_name=exact == "1", servername=server, no_start_server=True)
    ports = [client.midi_inports.register(n) for n in inputs if not n.startswith(">")]
    outs = [client.midi_outports.register(n[1:]) for n in inputs if n.startswith(">")]
    buf: list[tuple[int, int, bytes]] = []  # append/del are single GIL-atomic list operations
    pending: list[bytes] = []  # to send on the first output, at the start of the next period
    xruns = [0]
    xrun_frames: list[int] = []

    last_base: list[int | None] = [None]
    taken: set[tuple[int, int, bytes]] = set()  # this cycle's events, already in buf

    def process(frames: int) -> None:
        now_ns = time.clock_gettime_ns(raw) if stamp else 0  # first: the least after the cycle's start
        base = client.last_frame_time
        if stamp:
            buf.append((base, -3, now_ns.to_bytes(8, "big")))
        prev, last_base[0] = last_base[0], base
        if prev is not None and base - prev > frames:
            # cycles this client did not run in: their events are not in the recording
            buf.append((prev + frames, -1, (base - prev - frames).to_bytes(4, "big")))
        second = prev == base  # a second run in one cycle (the last one overran)
        if second:
            buf.append((base, -2, b""))
        else:
            taken.clear()
        for i, port in enumerate(ports):
            for offset, data in port.incoming_midi_events():
                key = (i, offset, bytes(data))
                # a second run reads the cycle's events again: only what the first did not
                # take is new (never seen, but a note-off dropped here would look stuck)
                if key not in taken:
                    taken.add(key)
                    buf.append((base + offset, i, key[2]))
        for port in outs:
            port.clear_buffer()
        if outs and pending:
            n = len(pending)
            for data in pending[:n]:
                outs[0].write_midi_event(0, data)
            del pending[:n]

    def xrun(delay: float) -> None:
        # told on a notification thread shortly after the fact: the frame is approximate
        xrun_frames.append(client.frame_time)
        xruns[0] += 1

    client.set_process_callback(process)
    client.set_xrun_callback(xrun)
    client.activate()
    out = sys.stdout
    out.write(f"R {client.name}\n")
    out.flush()

    done = threading.Event()
    wake = threading.Event()
    syncs = [0]  # sync requests read so far

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "S":
                syncs[0] += 1
                wake.set()
            elif line.startswith("W "):
                pending.append(bytes.fromhex(line[2:].strip()))
        done.set()
        wake.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    reported = acked = 0
    while True:
        wake.wait(0.01)
        wake.clear()
        stopping = done.is_set()
        requested = syncs[0]  # read before the flush: everything stamped by now goes out first
        n = len(buf)
        chunk = buf[:n]
        del buf[:n]
        lines = [f"E {f} {i} {d.hex()}\n" if i >= 0 else f"C {f} {int.from_bytes(d, 'big')}\n" if i == -3
                 else f"M {f} {int.from_bytes(d, 'big')}\n" if i == -1 else f"D {f}\n" for f, i, d in chunk]
        while reported < len(xrun_frames):
            lines.append(f"X {reported + 1} {xrun_frames[reported]}\n")
            reported += 1
        if requested != acked:
            acked = requested
            lines.append(f"K {acked}\n")
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
