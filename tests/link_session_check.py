"""The real binding behind LinkClock against a real peer process, without JACK.

Run by tests/test_link_real.py through ``unshare --net`` (tests/link_rig.py);
refuses to run anywhere else. Prints one JSON object: what the peer saw of the
performer's own tempo change, and what the performer's clock saw of the
peer's tempo change, start and stop.
"""

from __future__ import annotations

import json
import sys
import time


def wait(pred, timeout: float, step: float = 0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def main() -> int:
    from tests import link_rig

    link_rig.setup_loopback()
    link_rig.require_private_netns()
    from performer.clock import START, STOP
    from performer.link_clock import open_link_clock

    clock = open_link_clock(100.0)
    out: dict = {"interfaces": link_rig.interfaces()}
    peer = None
    try:
        clock.start(time.perf_counter())
        peer = link_rig.Peer(120.0)
        events: list = []

        def pump():
            events.extend(clock.update(time.perf_counter()))
            return clock.peers() >= 1

        out["joined"] = bool(wait(pump, 15.0))
        clock.set_tempo(133.0, time.perf_counter())
        wait(lambda: abs(peer.ask("grid")["tempo"] - 133.0) < 1e-3, 5.0, 0.05)
        out["peer_tempo_after_ours"] = peer.ask("grid")["tempo"]
        peer.ask("tempo 90")
        wait(lambda: pump() and abs(clock.bpm() - 90.0) < 1e-3, 5.0)
        out["our_bpm_after_peer"] = clock.bpm()
        out["describe"] = clock.describe()
        # phase: our song position against the peer's beat at the same host time
        g = peer.ask("grid")
        ours = clock.position(clock.bridge.to_perf(g["host_us"])) / 24.0
        d = (ours - g["beat"]) % 4.0
        out["phase_diff_beats"] = min(d, 4.0 - d)
        start = peer.ask("play")
        wait(lambda: pump() and False, 0.3)
        peer.ask("stop")
        wait(lambda: pump() and not clock.running, 5.0)
        events.clear()
        out["stopped_after_peer_stop"] = not clock.running
        start = peer.ask("play")
        wait(lambda: pump() and clock.running, 5.0)
        out["started_after_peer_start"] = clock.running
        starts = [e for e in events if e.kind == START]
        out["start_pos"] = starts[-1].pos if starts else None
        if starts:
            t = clock.time_at(starts[-1].pos)
            out["start_time_minus_peer_start_us"] = clock.bridge.to_host(t) - start["start_us"]
        peer.ask("stop")
        wait(lambda: pump() and not clock.running, 5.0)
        out["stops"] = sum(1 for e in events if e.kind == STOP)
    finally:
        if peer is not None:
            peer.close()
        clock.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
