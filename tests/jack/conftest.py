"""Fixtures for the JACK suite: one private server per session, the model the performer plays."""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

import pytest

from tests.jack import harness

log = logging.getLogger(__name__)


# A JACK call that never returns (a wedged server) must not hang CI for its
# whole time limit: after this long, print every thread's stack and exit.
WATCHDOG_S = 300.0


@pytest.fixture(autouse=True)
def _watchdog(request):
    import faulthandler

    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True, file=_real_stderr(request.config))
    yield
    faulthandler.cancel_dump_traceback_later()


@functools.cache
def _real_stderr(config):
    """The terminal's stderr, not pytest's capture of it: the watchdog's stacks were lost in
    the capture when it fired (a stress run, 2026-12-02: the run ended with exit 1 and no
    word of which test hung). pytest keeps the original descriptor in its capture manager
    (not a public API: without it, the captured stderr as before). One copy per session."""
    capman = config.pluginmanager.getplugin("capturemanager")
    err = getattr(getattr(capman, "_global_capturing", None), "err", None)
    fd = getattr(err, "targetfd_save", None)
    return os.fdopen(os.dup(fd), "w") if isinstance(fd, int) else sys.stderr


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    server = harness.start_private_server(tmp_path_factory.mktemp("jack"))
    yield server
    server.stop()


@pytest.fixture
def server(jack_server):
    """The session's server, checked alive: a test that crashed jackd must not
    make every later test fail with a confusing connection error."""
    if not jack_server.alive():
        pytest.fail(f"the private jackd died; log: {jack_server.workdir / 'jackd.log'}")
    return jack_server


@pytest.fixture(scope="session")
def live_model(request) -> Path:
    """The model the performer plays: the shipped one, else the tiny exported test model."""
    from performer.engine import default_model_dir

    shipped = default_model_dir()
    if (shipped / "model.json").exists():
        return shipped
    log.info("no shipped model in %s; using the tiny test model", shipped)
    return request.getfixturevalue("tiny_model")
