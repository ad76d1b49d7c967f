"""The other Link peer of the Link tests and benchmark: a small process on the same binding.

Run only by :class:`tests.link_rig.Peer`, and only in a private network
namespace (it checks before it creates its Link instance). Reads one
command per line on stdin and answers one JSON object per line:

* ``peers``: how many peers it sees
* ``grid``: its timeline now (host time, beat, microseconds per beat, tempo, playing)
* ``tempo BPM``: change the session tempo now; answers the timeline from then on
* ``play``: start the session transport on the first bar line at least a beat ahead
  (a quantized launch, as Live does); answers that time and its beat
* ``stop``: stop the session transport now
* ``quit``

Times are Link host time (CLOCK_MONOTONIC_RAW, microseconds); beats are at quantum 4.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from tests.link_rig import require_private_netns

Q = 4.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bpm", type=float, default=120.0)
    a = p.parse_args(argv)
    require_private_netns()
    import link

    lk = link.Link(a.bpm)
    lk.startStopSyncEnabled = True
    lk.enabled = True
    clock = lk.clock()

    def timeline(s, t: int) -> dict:
        b = s.beatAtTime(t, Q)
        return {"host_us": t, "beat": b, "us_per_beat": s.timeAtBeat(b + 1, Q) - s.timeAtBeat(b, Q),
                "tempo": s.tempo(), "playing": s.isPlaying()}

    def say(d: dict) -> None:
        sys.stdout.write(json.dumps(d) + "\n")
        sys.stdout.flush()

    say({"ready": True})
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        now = clock.micros()
        if cmd[0] == "quit":
            say({"bye": True})
            break
        if cmd[0] == "peers":
            say({"peers": lk.numPeers()})
        elif cmd[0] == "grid":
            say(timeline(lk.captureAppSessionState(), now))
        elif cmd[0] == "tempo":
            s = lk.captureAppSessionState()
            s.setTempo(float(cmd[1]), now)
            lk.commitAppSessionState(s)
            say(timeline(lk.captureAppSessionState(), now))
        elif cmd[0] == "play":
            s = lk.captureAppSessionState()
            bar = math.ceil((s.beatAtTime(now, Q) + 1.0) / Q) * Q  # at least a beat ahead
            t = int(s.timeAtBeat(bar, Q))
            s.setIsPlaying(True, t)
            lk.commitAppSessionState(s)
            s = lk.captureAppSessionState()
            say({**timeline(s, t), "start_us": s.timeForIsPlaying()})
        elif cmd[0] == "stop":
            s = lk.captureAppSessionState()
            s.setIsPlaying(False, now)
            lk.commitAppSessionState(s)
            say(timeline(lk.captureAppSessionState(), now))
        else:
            say({"error": f"unknown command {cmd[0]!r}"})
    lk.enabled = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
