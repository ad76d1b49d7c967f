"""The runtime engine: an exported model folder -> Patterns, with numpy and ONNX Runtime only.

Sessions are tuned for a live process that must not steal the sender thread's
core: one intra-op thread, no spinning, sequential execution, full graph
optimisation (which folds the sampler's weight tables once at load), and a
warm-up decode so the first real one is as fast as the rest.

Reproducibility: ``sample(seed=S, temperature=T)`` draws z and then the
Gumbel noise from ``numpy.random.default_rng(S)`` (z is drawn even when one is
given, so ``sample(z=prior(S), seed=S) == sample(seed=S)``); the same model, seed and
temperature give the same Pattern on every machine ONNX Runtime agrees on.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from model import bundle, drums
from model.config import FILL_STRENGTH, FILL_TEMPERATURE
from model.errors import DrumPerformerError
from model.sampling import bar_temperatures, gumbel, mixture_draw

log = logging.getLogger(__name__)


class EngineError(DrumPerformerError):
    pass


def default_model_dir() -> Path:
    """The model shipped inside the package."""
    return Path(str(resources.files("performer") / "models" / "default"))


def session(path: Path):
    """An ONNX Runtime session with the live options above (export's parity check uses it too,
    so parity is measured on exactly the sessions the product runs)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise EngineError("onnxruntime is not installed: pip install onnxruntime") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise EngineError(f"cannot load {path}: {str(e).splitlines()[0][:200]}") from None


def _checked_session(folder: Path, graph: bundle.Graph, meta: dict):
    """A session of one of the folder's graphs, and the names of the inputs it has."""
    sess = session(folder / graph.file)
    try:
        # inputs with a default (the sampler's mask) are overridable initializers, not inputs
        inputs = [*sess.get_inputs(), *sess.get_overridable_initializers()]
        names = graph.check(folder, inputs, sess.get_outputs(), meta)
    except bundle.BundleError as e:
        raise EngineError(str(e)) from None
    return sess, names


def verify(folder: str | Path) -> None:
    """Every check :meth:`Engine.load` makes, plus the encoder graph's (load leaves it for first use).

    Export runs it on a new folder before the folder replaces anything.
    """
    folder = Path(folder)
    try:
        meta = bundle.read(folder)
    except bundle.BundleError as e:
        raise EngineError(str(e)) from None
    for graph in (bundle.SAMPLER_GRAPH, bundle.ENCODER_GRAPH):
        _checked_session(folder, graph, meta)


def _release_freed_heap() -> None:
    """Hand the heap ONNX Runtime freed while optimising the graph back to the OS.

    Graph optimisation of the unrolled sampler peaks ~16 MB above what the
    session keeps; glibc holds on to that memory unless asked. The live
    process's resident size is a product target, so ask (Linux/glibc only).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


Lock = tuple[drums.Pattern, np.ndarray]  # (source pattern, (9,) bool voices to keep)

ANY_STYLE = bundle.ANY_STYLE
PRIOR = bundle.PRIOR


def _read_prior(folder: Path, meta: dict, z_size: int, n_styles: int):
    """The learned latent prior (a diagonal Gaussian mixture per style, index 0 = "any"), or None.

    Arrays: weights (S, K), means (S, K, Z), scales (S, K, Z). Why a mixture and not
    N(0, I): the posteriors of this model sit far from N(0, I) (KL ~250 nats), so
    prior draws land where the decoder never trained (see runs/groove/eval).
    """
    if PRIOR not in meta["files"]:
        return None
    try:
        with np.load(folder / PRIOR) as f:
            w, m, sc = (np.asarray(f[k], np.float64) for k in ("weights", "means", "scales"))
    except Exception as e:
        raise EngineError(f"cannot read {folder / PRIOR}: {e}") from None
    if not (w.ndim == 2 and m.shape == (*w.shape, z_size) and sc.shape == m.shape and w.shape[0] == n_styles):
        raise EngineError(f"{folder / PRIOR} does not fit the model (z {z_size}, {n_styles} styles)")
    if not (np.isfinite(w).all() and np.isfinite(m).all() and np.isfinite(sc).all()
            and (w >= 0).all() and (w.sum(1) > 0).all() and (sc >= 0).all()):
        raise EngineError(f"{folder / PRIOR} holds non-finite or negative weights or scales")
    w = w / w.sum(1, keepdims=True)
    return w, m.astype(np.float32), sc.astype(np.float32)


class Engine:
    def __init__(self, folder: Path, meta: dict, sampler, encoder_factory, sampler_inputs=frozenset()):
        """``meta``: model.json as :func:`model.bundle.read` checked it."""
        self.folder = folder
        self.meta = meta
        self._sampler = sampler
        self._sampler_inputs = frozenset(sampler_inputs)
        self._encoder_factory = encoder_factory
        self._encoder_session = None
        self.z_size: int = meta["z_size"]
        self.attributes: dict[str, np.ndarray] = meta["attributes"]
        t = meta["temperature"]
        self.temperature_range = (t["min"], t["max"])
        self.default_temperature = t["default"]
        self._zero_noise = np.zeros((1, drums.STEPS, drums.NUM_CLASSES), np.float32)
        self.styles: tuple[str, ...] = tuple(meta["styles"])  # style i+1; 0 = "any"
        self.has_fills: bool = meta["fills"]
        self._feeds_style = "style" in self._sampler_inputs
        self._feeds_fill = "fill" in self._sampler_inputs
        self.prior_mixture = _read_prior(folder, meta, self.z_size, len(self.styles) + 1)

    # --- loading -------------------------------------------------------------

    @classmethod
    def load(cls, model_dir: str | Path | None = None, warm: bool = True) -> Engine:
        """Load and check a model folder (see :mod:`model.bundle`); any problem is an EngineError."""
        folder = Path(model_dir) if model_dir is not None else default_model_dir()
        try:
            meta = bundle.read(folder)
        except bundle.BundleError as e:
            raise EngineError(str(e)) from None
        sampler, inputs = _checked_session(folder, bundle.SAMPLER_GRAPH, meta)

        def encoder():  # loaded (and checked) on first use: the live loop never encodes
            return _checked_session(folder, bundle.ENCODER_GRAPH, meta)[0]

        engine = cls(folder, meta, sampler, encoder, inputs)
        if warm:
            engine.sample(seed=0)
        _release_freed_heap()
        return engine

    def extra_session(self, name: str):
        """A session (the live options) for another graph listed in model.json's files,
        e.g. the tap encoder that ``performer.band`` loads on first use."""
        if name not in self.meta.get("files", {}):
            raise EngineError(f"the model in {self.folder} has no {name}")
        return session(self.folder / name)

    @property
    def _encoder(self):
        if self._encoder_session is None:
            self._encoder_session = self._encoder_factory()
        return self._encoder_session

    # --- latents -------------------------------------------------------------

    def style_index(self, style: str | None) -> int:
        """A style name -> the model's style input (0 = "any")."""
        if style is None or style == ANY_STYLE:
            return 0
        if style in self.styles:
            return self.styles.index(style) + 1
        known = ", ".join(self.styles) or "none: it was trained without genres"
        raise EngineError(f"unknown style {style!r} (this model knows: {known})")

    def draw_z(self, rng: np.random.Generator, style: int = 0) -> np.ndarray:
        """One z from the prior of style index ``style`` (the learned mixture, else N(0, I))."""
        if self.prior_mixture is None:
            return rng.standard_normal(self.z_size).astype(np.float32)
        w, m, sc = self.prior_mixture
        return mixture_draw(rng, w[style], m[style], sc[style], 1)[0]

    def prior(self, seed: int | None = None, style: str | None = None) -> np.ndarray:
        """z from the model's prior (the learned mixture of the style, else N(0, I)), (Z,)
        float32; the same draw sample(seed=..., style=...) uses."""
        return self.draw_z(np.random.default_rng(seed), self.style_index(style))

    def attribute(self, name: str = "density") -> np.ndarray:
        if name not in self.attributes:
            raise EngineError(f"model has no attribute vector {name!r} (has: {', '.join(self.attributes) or 'none'})")
        return self.attributes[name]

    @staticmethod
    def slerp(z_a: np.ndarray, z_b: np.ndarray, n: int) -> np.ndarray:
        """(n, Z) spherical interpolation from z_a to z_b, both ends included."""
        a, b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
        ts = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        cos = np.dot(a, b) / max(na * nb, 1e-12)
        omega = np.arccos(np.clip(cos, -1.0, 1.0))
        if omega < 1e-6:  # (anti)parallel-free degenerate case: straight line
            out = (1 - ts)[:, None] * a + ts[:, None] * b
        else:
            s = np.sin(omega)
            out = (np.sin((1 - ts) * omega) / s)[:, None] * a + (np.sin(ts * omega) / s)[:, None] * b
        return out.astype(np.float32)

    # --- decoding ------------------------------------------------------------

    def check_temperature(self, temperature: float) -> None:
        """EngineError unless ``temperature`` is within the model's range (model.json)."""
        lo, hi = self.temperature_range
        if not lo <= temperature <= hi:
            raise EngineError(f"temperature {temperature} outside {lo}..{hi}")

    def decode(self, z: np.ndarray, temperature: float, noise: np.ndarray | None = None, mask: np.ndarray | None = None,
               style: np.ndarray | int = 0, fill: np.ndarray | None = None, fill_temperature: float = FILL_TEMPERATURE):
        """Batch decode. z (B, Z); noise (B, T, C) Gumbel or None (argmax); mask (B|1, T, C) bool;
        style (B,) int or one int for all (0 = "any"); fill (B, N) per-bar fill input or None (no
        fills); a bar asked as a fill is drawn at ``fill_temperature`` at least (see model.config).

        -> classes (B, T) int64, velocity (B, T, V), offset (B, T, V).
        """
        z = np.ascontiguousarray(z, dtype=np.float32).reshape(-1, self.z_size)
        if noise is None:
            noise = self._zero_noise if len(z) == 1 else np.zeros((len(z), drums.STEPS, drums.NUM_CLASSES), np.float32)
        if self._feeds_fill:
            temperature, noise = bar_temperatures(temperature, noise, fill, fill_temperature)
        feed = {"z": z, "temperature": np.array([temperature], np.float32), "noise": noise}
        if mask is not None:
            if "mask" not in self._sampler_inputs:
                raise EngineError(f"{self.folder / bundle.SAMPLER} has no mask input: this model cannot lock voices")
            feed["mask"] = np.ascontiguousarray(mask, dtype=bool)
        if self._feeds_style:
            feed["style"] = np.broadcast_to(np.asarray(style, np.int64), (len(z),)).copy()
        if self._feeds_fill:
            f = np.zeros((len(z), drums.BARS), np.float32) if fill is None else np.asarray(fill, np.float32)
            feed["fill"] = np.ascontiguousarray(np.broadcast_to(f, (len(z), drums.BARS)))
        elif fill is not None and np.any(fill):
            raise EngineError(f"the model in {self.folder} has no fills (export a model trained with fills)")
        classes, vel, off = self._sampler.run(None, feed)
        return classes, vel, off

    def sample(
        self,
        z: np.ndarray | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        lock: Lock | None = None,
        style: str | None = None,
        fill: bool = False,
    ) -> drums.Pattern:
        """One 4-bar Pattern. z None: drawn from the seed (the style's prior); temperature None:
        the model's default; lock: keep those voices of a pattern; style: a name of
        ``self.styles`` (None = "any"); fill: bar 4 is a fill (bars 1-3 are exactly the
        pattern the same call without ``fill`` gives)."""
        if temperature is None:
            temperature = self.default_temperature
        self.check_temperature(temperature)
        s_idx = self.style_index(style)
        rng = np.random.default_rng(seed)
        # z is always drawn first, so a seed gives the same noise with or without an explicit z
        z_prior = self.draw_z(rng, s_idx)
        if z is None:
            z = z_prior
        # a fill bar is drawn hotter than the groove (FILL_TEMPERATURE), so it needs noise even at 0
        noise = gumbel(rng, (1, drums.STEPS, drums.NUM_CLASSES)) if temperature > 0 or fill else None
        mask = None
        if lock is not None:
            src, keep = lock
            mask = drums.class_mask_for_lock(src.hits, keep)[None]  # (1, T, C)
        fills = None
        if fill:
            fills = np.zeros((1, drums.BARS), np.float32)
            fills[0, -1] = FILL_STRENGTH
        c, v, o = self.decode(z, temperature, noise, mask, s_idx, fills)
        pattern = drums.Pattern.from_classes(c[0], v[0], o[0])
        if lock is not None:
            # the kept voices keep their own groove too, not just their hits
            pattern = pattern.with_voices(src, lock[1])
        return pattern

    # --- encoding ------------------------------------------------------------

    def encode_arrays(self, classes: np.ndarray, velocity: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batch encode. classes (B, T) int, velocity and offset (B, T, V) -> mu, logvar (B, Z)."""
        feed = {
            "classes": np.asarray(classes, dtype=np.int64),
            "velocity": np.asarray(velocity, dtype=np.float32),
            "offset": np.asarray(offset, dtype=np.float32),
        }
        mu, logvar = self._encoder.run(None, feed)
        return mu, logvar

    def encode_batch(self, patterns: list[drums.Pattern]) -> tuple[np.ndarray, np.ndarray]:
        for p in patterns:
            if p.steps != drums.STEPS:
                raise EngineError(f"a pattern to encode needs {drums.STEPS} steps, got {p.steps}")
        return self.encode_arrays(
            np.stack([p.classes() for p in patterns]),
            np.stack([p.velocity for p in patterns]),
            np.stack([p.offset for p in patterns]),
        )

    def encode(self, pattern: drums.Pattern) -> np.ndarray:
        """Posterior mean of a Pattern, (Z,)."""
        return self.encode_batch([pattern])[0][0]

    def encode_file(self, path: str | Path) -> np.ndarray:
        from model import midifile

        return self.encode(midifile.read_pattern(path))
