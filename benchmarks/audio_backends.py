"""Which audio library for live ``--audio``: sounddevice, PyAudio or JACK-Client, measured.

Each candidate plays the built-in kit (performer.sound.Renderer, a note every
125 ms) for SECONDS from its own callback, in a process of its own, on a
private JACK server (dummy driver, 48 kHz, period 128), as the live sink
would. Measured per candidate: CPU of the process while playing (getrusage,
% of one core), callback time (median, p99, max, ms), the longest gap between
two callbacks (a stalled audio thread), underflows or xruns the library or
JACK reported, the time to import the library and open the stream, and
whether the library offers the DAC time of each block (needed to compensate
the output latency) and reaches an output where no JACK server runs.

    python -m benchmarks.audio_backends [--seconds 20] [--json FILE]

The choice (performer/audio_out.py): sounddevice. Over JACK its costs are in
the results file next to the others'; what decides is that it reaches the
default output on every platform (PortAudio: ALSA / PulseAudio / PipeWire,
CoreAudio, WASAPI; its macOS and Windows wheels bundle PortAudio) and gives
``outputBufferDacTime`` with numpy buffers. PyAudio is PortAudio too but
copies bytes in and out of each callback and ships PortAudio only in its
Windows wheels; JACK-Client reaches nothing where JACK is not running.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CANDIDATES = ("sounddevice", "pyaudio", "jack")


def _child(backend: str, seconds: float) -> dict:
    """Play for ``seconds`` with ``backend``; the figures as a dict (runs in its own process)."""
    import numpy as np

    from performer.sound import Event, Renderer

    t_import = time.perf_counter()
    starts: list[float] = []
    busy: list[float] = []
    problems = [0]
    state = {"renderer": None, "next": 0}
    dac_time = False
    reaches_default = False

    def block(frames: int) -> np.ndarray:
        t = time.perf_counter()
        starts.append(t)
        r = state["renderer"]
        while state["next"] < r.frame + frames:
            r.schedule(Event(state["next"], (36, 38, 42, 46)[len(starts) % 4], 100))
            state["next"] += r.sample_rate // 8
        out = r.render(frames)
        busy.append(time.perf_counter() - t)
        return out

    if backend == "sounddevice":
        import sounddevice as sd

        dev = next(h["default_output_device"] for h in sd.query_hostapis() if h["name"].startswith("JACK"))
        rate = int(sd.query_devices(dev)["default_samplerate"])
        state["renderer"] = Renderer(sample_rate=rate)
        t0 = time.perf_counter()

        def cb(out, frames, ti, status):
            if status.output_underflow:
                problems[0] += 1
            out[:] = block(frames)

        stream = sd.OutputStream(device=dev, samplerate=rate, channels=2, dtype="float32", latency="low",
                                 callback=cb)
        dac_time = True
        reaches_default = True
    elif backend == "pyaudio":
        import pyaudio

        pa = pyaudio.PyAudio()
        idx = next(i for i in range(pa.get_host_api_count())
                   if pa.get_host_api_info_by_index(i)["name"].startswith("JACK"))
        dev = pa.get_host_api_info_by_index(idx)["defaultOutputDevice"]
        rate = int(pa.get_device_info_by_index(dev)["defaultSampleRate"])
        state["renderer"] = Renderer(sample_rate=rate)
        t0 = time.perf_counter()

        def pcb(in_data, frames, ti, status):
            if status & pyaudio.paOutputUnderflow:
                problems[0] += 1
            return block(frames).tobytes(), pyaudio.paContinue

        stream = pa.open(format=pyaudio.paFloat32, channels=2, rate=rate, output=True,
                         output_device_index=dev, stream_callback=pcb, start=False)
        dac_time = True
        reaches_default = True
    else:
        import jack

        client = jack.Client("dp-backend-bench", no_start_server=True)
        rate = client.samplerate
        state["renderer"] = Renderer(sample_rate=rate)
        t0 = time.perf_counter()
        ports = [client.outports.register(f"out_{i}") for i in range(2)]

        def process(frames):
            b = block(frames)
            ports[0].get_array()[:] = b[:, 0]
            ports[1].get_array()[:] = b[:, 1]

        def xrun(delay):
            problems[0] += 1

        client.set_process_callback(process)
        client.set_xrun_callback(xrun)
        stream = client
        dac_time = True  # last_frame_time + the port's playback latency
        reaches_default = False
    open_s = time.perf_counter() - t0
    import_s = t0 - t_import
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.perf_counter()
    if backend == "jack":
        stream.activate()
    elif backend == "pyaudio":
        stream.start_stream()
    else:
        stream.start()
    time.sleep(seconds)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    w1 = time.perf_counter()
    if backend == "jack":
        stream.deactivate()
        stream.close()
    elif backend == "pyaudio":
        stream.stop_stream()
        stream.close()
    else:
        stream.stop()
        stream.close()
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / (w1 - w0)
    b = np.array(busy) * 1000
    gaps = np.diff(np.array(starts)) * 1000
    return {
        "backend": backend,
        "callbacks": len(busy),
        "cpu_percent": 100 * cpu,
        "callback_median_ms": float(np.median(b)),
        "callback_p99_ms": float(np.percentile(b, 99)),
        "callback_max_ms": float(b.max()),
        "longest_gap_ms": float(gaps.max()) if len(gaps) else None,
        "underflows_or_xruns": problems[0],
        "import_backend_and_build_kit_s": import_s,
        "open_s": open_s,
        "dac_time_per_block": dac_time,
        "reaches_default_output_without_jack": reaches_default,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.audio_backends", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", choices=CANDIDATES, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.seconds)))
        return 0
    from tests.jack import harness as h

    results = []
    load0 = os.getloadavg()
    with h.JackServer(rate=48000, period=128) as server:
        for backend in CANDIDATES:
            r = subprocess.run([sys.executable, "-m", "benchmarks.audio_backends", "--child", backend,
                                "--seconds", str(a.seconds)], capture_output=True, text=True, env=server.env,
                               timeout=a.seconds + 60)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
            res = json.loads(lines[-1]) if lines else {"backend": backend, "error": r.stderr[-500:]}
            results.append(res)
            print(res, file=sys.stderr, flush=True)
    print(f"{'backend':>12} {'CPU%':>6} {'cb med':>7} {'cb p99':>7} {'cb max':>7} {'gap max':>8} {'xruns':>6} "
          f"{'open s':>7}")
    for r in results:
        if "error" in r:
            print(f"{r['backend']:>12} failed: {r['error']}")
            continue
        print(f"{r['backend']:>12} {r['cpu_percent']:6.1f} {r['callback_median_ms']:7.3f} {r['callback_p99_ms']:7.3f} "
              f"{r['callback_max_ms']:7.3f} {r['longest_gap_ms']:8.2f} {r['underflows_or_xruns']:6d} "
              f"{r['open_s']:7.2f}")
    if a.json:
        a.json.write_text(json.dumps({
            "command": " ".join(["python", "-m", "benchmarks.audio_backends", *(argv if argv is not None else sys.argv[1:])]),
            "loadavg_at_start": load0, "loadavg_at_end": os.getloadavg(), "seconds": a.seconds,
            "server": {"driver": "dummy", "rate": 48000, "period": 128}, "results": results,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
