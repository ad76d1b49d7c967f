"""The exported model folder: file names, format, metadata and checks, in one torch-free place.

Export writes a model folder through this module and the engine reads it
through this module, so the two sides cannot drift apart. It lives in
``model/`` beside :mod:`model.drums` because both ``export/`` (torch) and
``performer/`` (no torch) need it, and ``model/`` is the one package both
already depend on; it imports neither torch nor ONNX Runtime (the engine
passes in what its sessions declare).

A model folder holds

* ``sampler.onnx``  see :data:`SAMPLER_GRAPH`
* ``encoder.onnx``  see :data:`ENCODER_GRAPH`
* ``model.json``    see :data:`FIELDS` (plus free-form information: name,
  preset, training, metrics, parity, attribution, license)

Storage, not contract: export stores weights as float16 initializers cast to
float32 inside the graphs (ONNX Runtime folds the casts when a session is
created, so the graphs still take and give float32 and compute in float32),
and ``prior.npz`` deflated (``np.load`` reads either kind). An engine that read
the previous folders reads these unchanged, so :data:`FORMAT` stays 1.

Every way a folder can be wrong (a missing or corrupt file, a field of the
wrong type, a vector of the wrong length, graphs that do not fit the
metadata or each other) becomes one :class:`BundleError` line naming the file
and the field; the engine and the exporter re-raise it as their own error.

Growing the contract is one entry per item: a new graph input is one
:class:`Tensor` in a graph's inputs (``optional=True`` when folders without
it stay valid; the engine feeds it only when the graph has it), a new
``model.json`` item is one :class:`Field` in :data:`FIELDS`, and a new file is
one name in :data:`FILES` or :data:`OPTIONAL_FILES` (its checksum then goes
into ``files``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import drums
from model.config import SAMPLE_TEMPERATURE
from model.errors import DrumPerformerError
from model.fileio import atomic_write_text
from model.ranges import Range

FORMAT = 1  # bump when a reader of the old format would misread the new one
SAMPLER, ENCODER, META = "sampler.onnx", "encoder.onnx", "model.json"
PRIOR = "prior.npz"  # the learned latent prior: weights (S, K), means and scales (S, K, Z)
FILES: tuple[str, ...] = (SAMPLER, ENCODER)  # files every model folder has, checksummed in ``files``
# files a folder may have; checksummed when present. tap.onnx / humanize.onnx: the small encoders of
# train.tap that export.band adds beside the graphs (drumify, humanize); without them here a folder
# that has them was not recognised as a model folder, so export refused to replace the shipped one
OPTIONAL_FILES: tuple[str, ...] = (PRIOR, "tap.onnx", "humanize.onnx")
ANY_STYLE = "any"  # the name of style input 0: no particular style (every style's mix)

# The sampling temperature a model folder may declare, and what export writes: 0 is the argmax
# groove; above 2 the Gumbel noise drowns the model's logits (patterns turn to random hits).
TEMPERATURE = Range(0.0, 2.0)


class BundleError(DrumPerformerError):
    """A model folder that cannot be used; one line naming the file and what is wrong."""


def vocabulary() -> dict:
    """The vocabulary a model folder records and is checked against (from :mod:`model.drums`)."""
    return {
        "voices": list(drums.VOICES),
        "output_pitches": list(drums.OUTPUT_PITCHES),
        "num_classes": drums.NUM_CLASSES,
        "steps": drums.STEPS,
        "steps_per_bar": drums.STEPS_PER_BAR,
        "bars": drums.BARS,
    }


# the entries of ``vocabulary`` a reader depends on (the rest follow from them)
_VOCABULARY_CHECKED = ("voices", "output_pitches", "num_classes", "steps")


def temperature() -> dict:
    """The temperature entry export writes: the product's default and range."""
    return {"default": SAMPLE_TEMPERATURE, "min": TEMPERATURE.lo, "max": TEMPERATURE.hi}


# --- model.json fields -------------------------------------------------------------------------


class _Bad(ValueError):
    """A field's parser rejects a value; the message completes '<field> ...'."""


def _whole(v, what: str = "a whole number") -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"must be {what}, not {v!r}")
    return v


def _real(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _Bad(f"{name} must be a finite number, not {v!r}")
    return float(v)


def _obj(v, what: str) -> dict:
    if not isinstance(v, dict):
        raise _Bad(f"must be {what}, not {type(v).__name__} {_short(v)}")
    return v


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _parse_format(v, meta: dict) -> int:
    if v != FORMAT or isinstance(v, bool):
        raise _Bad(f"is {_short(v)}, this version reads {FORMAT}")
    return v


def _parse_vocabulary(v, meta: dict) -> dict:
    v = _obj(v, "an object (voices, output_pitches, num_classes, steps)")
    want = vocabulary()
    for k in _VOCABULARY_CHECKED:
        if v.get(k) != want[k]:
            raise _Bad(f"differs ({k}: {_short(v.get(k))}, expected {want[k]!r}): exported with a different vocabulary")
    return v


def _parse_z_size(v, meta: dict) -> int:
    v = _whole(v, "a whole number > 0")
    if v < 1:
        raise _Bad(f"must be a whole number > 0, not {v}")
    return v


def _parse_temperature(v, meta: dict) -> dict:
    v = _obj(v, "an object with default, min and max")
    t = {k: _real(v.get(k, d), k) for k, d in temperature().items()}
    if not (TEMPERATURE.lo <= t["min"] <= t["default"] <= t["max"]):
        raise _Bad(f"must satisfy {TEMPERATURE.lo:g} <= min <= default <= max, got {t}")
    return t


def _parse_attributes(v, meta: dict) -> dict[str, np.ndarray]:
    v = _obj(v, "an object of name -> latent vector")
    z = meta["z_size"]
    out = {}
    for name, vec in v.items():
        try:
            arr = np.asarray(vec, dtype=np.float32)
        except (TypeError, ValueError):
            raise _Bad(f"{name!r} is not a list of numbers") from None
        if arr.shape != (z,):
            raise _Bad(f"{name!r} has shape {arr.shape}, the latent has z_size {z}")
        if not np.isfinite(arr).all():
            raise _Bad(f"{name!r} holds non-finite numbers")
        out[str(name)] = arr
    return out


def _parse_styles(v, meta: dict) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise _Bad(f"must be a list of style names, not {_short(v)}")
    if ANY_STYLE in v or len(set(v)) != len(v):
        raise _Bad(f"must name each style once and not {ANY_STYLE!r} (style input 0), got {_short(v)}")
    return v


def _parse_flag(v, meta: dict) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"must be true or false, not {_short(v)}")
    return v


def _parse_files(v, meta: dict) -> dict[str, str]:
    v = _obj(v, "an object of file name -> sha256")
    for name, digest in v.items():
        if not isinstance(name, str) or not name or name != Path(name).name or name.startswith("."):
            raise _Bad(f"names {name!r}, which is not a file of the model folder")
        if not isinstance(digest, str) or len(digest) != 64:
            raise _Bad(f"gives {name} the checksum {_short(digest)}, not a sha256 hex digest")
    return v


@dataclass(frozen=True)
class Field:
    """One checked entry of model.json: its parser returns the value the engine uses.

    ``default`` (a callable, so nothing mutable is shared) makes the field
    optional; parsers run in table order and see the fields parsed before them.
    """

    name: str
    parse: Callable[[object, dict], object]
    default: Callable[[], object] | None = None


FIELDS: tuple[Field, ...] = (
    Field("format", _parse_format),
    Field("vocabulary", _parse_vocabulary),
    Field("z_size", _parse_z_size),
    Field("temperature", _parse_temperature, default=temperature),
    Field("attributes", _parse_attributes, default=dict),
    Field("styles", _parse_styles, default=list),  # style input i + 1 = styles[i]; 0 = ANY_STYLE
    Field("fills", _parse_flag, default=lambda: False),  # the sampler has a per-bar fill input
    Field("files", _parse_files, default=dict),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(folder: str | Path) -> dict:
    """model.json of a folder, checked: every :data:`FIELDS` entry parsed, files present and whole.

    Returns the metadata with the checked fields replaced by their parsed
    values (defaults filled in); other entries pass through as they are.
    """
    folder = Path(folder)
    p = folder / META
    if not folder.exists():
        raise BundleError(f"model folder {folder} does not exist")
    if not folder.is_dir():
        raise BundleError(f"model folder {folder} is not a folder")
    if not p.exists():
        raise BundleError(f"{folder} is not an exported model (no {META}); run drum-performer export")
    try:
        meta = json.loads(p.read_text())
    except (ValueError, OSError) as e:
        raise BundleError(f"{p} is corrupt: {e}") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{p} is corrupt: not a JSON object")
    out = dict(meta)
    for f in FIELDS:
        if f.name not in meta:
            if f.default is None:
                raise BundleError(f"{p} has no {f.name}")
            out[f.name] = f.default()
            continue
        try:
            out[f.name] = f.parse(meta[f.name], out)
        except _Bad as e:
            raise BundleError(f"{p}: {f.name} {e}") from None
    for name in FILES:
        if not (folder / name).is_file():
            raise BundleError(f"{folder / name} is missing")
    for name, digest in out["files"].items():
        f = folder / name
        if not f.is_file():
            raise BundleError(f"{f} is missing")
        if _sha256(f) != digest:
            raise BundleError(f"{f} is corrupt (checksum differs from {META})")
    return out


def is_model_folder(folder: str | Path) -> bool:
    """A folder export wrote: our model.json and nothing but the folder's files.

    Only such a folder may be replaced by an export: ``--out`` pointed at a
    user's folder, a run folder or ``.`` must never be emptied (issue 11).
    Its model.json need not pass :func:`read` (a vector of the wrong length, a
    stale checksum), so a broken export can be replaced by a good one.
    """
    folder = Path(folder)
    try:
        names = {p.name for p in folder.iterdir()}
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return False
    return (
        names <= {META, *FILES, *OPTIONAL_FILES}
        and isinstance(meta, dict)
        and meta.get("format") == FORMAT
        and isinstance(meta.get("files"), dict)
        and "vocabulary" in meta
    )


def write(folder: str | Path, meta: dict) -> dict:
    """Add the checksums of the folder's files to ``meta``, write model.json, read it back.

    Reading back with :func:`read` means export can never write a folder the
    engine would refuse. Returns the metadata as written.
    """
    folder = Path(folder)
    meta = dict(meta)
    meta.setdefault("format", FORMAT)
    names = FILES + tuple(n for n in OPTIONAL_FILES if (folder / n).is_file())
    meta["files"] = {n: _sha256(folder / n) for n in names}
    atomic_write_text(json.dumps(meta, indent=1), folder / META)
    read(folder)
    return meta


# --- graphs ------------------------------------------------------------------------------------

# Dimension symbols in graph shapes: "B" any batch (each graph input may name its own), "Z" the
# metadata's z_size; numbers are fixed by the vocabulary.
T, C, V = drums.STEPS, drums.NUM_CLASSES, drums.NUM_VOICES


@dataclass(frozen=True)
class Tensor:
    """A graph input or output as the contract declares it."""

    name: str
    dtype: str  # ONNX Runtime's type name without "tensor(...)": float, int64, bool
    shape: tuple  # int (fixed), "B" (any batch) or "Z" (the model's z_size)
    optional: bool = False  # an input the graph may lack, or carry with a default
    needed_by: str = ""  # a model.json field that, when true/non-empty, makes an optional input required


@dataclass(frozen=True)
class Graph:
    """One ONNX file of the folder: its inputs and outputs, checked against a loaded session."""

    file: str
    role: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def check(self, folder: Path, inputs: Iterable, outputs: Iterable, meta: dict) -> frozenset[str]:
        """Compare what a session declares with the contract and the checked metadata.

        ``inputs``/``outputs``: objects with ``name``, ``type`` and ``shape`` (ONNX
        Runtime's ``NodeArg``: ``session.get_inputs()`` plus the overridable
        initializers, i.e. inputs with a default). Returns the names of the
        declared inputs the graph has, so a caller feeds an optional one only
        when it is there. Raises BundleError naming the first mismatch.
        """
        path = folder / self.file
        z_size = meta["z_size"]
        have_in = {a.name: a for a in inputs}
        have_out = {a.name: a for a in outputs}
        for kind, specs, have in (("input", self.inputs, have_in), ("output", self.outputs, have_out)):
            for spec in specs:
                if spec.name not in have:
                    if spec.needed_by and meta.get(spec.needed_by):
                        raise BundleError(
                            f"{path} has no {kind} {spec.name!r}, but model.json's {spec.needed_by} says the model has one"
                        )
                    if spec.optional:
                        continue
                    names = ", ".join(have) or "none"
                    raise BundleError(
                        f"{path} has no {kind} {spec.name!r} (it has {names}): not the {self.role} graph"
                        " (files swapped or from another program?)"
                    )
                _check_tensor(path, kind, spec, have[spec.name], z_size)
        return frozenset(s.name for s in self.inputs if s.name in have_in)


def _check_tensor(path: Path, kind: str, spec: Tensor, arg, z_size: int) -> None:
    dtype = str(arg.type)
    if dtype.startswith("tensor(") and dtype.endswith(")"):
        dtype = dtype[7:-1]
    shape = list(arg.shape) if arg.shape is not None else None
    want = [z_size if d == "Z" else d for d in spec.shape]

    def show(dims) -> str:
        return "(" + ", ".join(str(d) for d in dims) + ")"

    bad = dtype != spec.dtype or shape is None or len(shape) != len(want)
    if not bad:
        for got, w in zip(shape, want, strict=True):
            if isinstance(w, int) and isinstance(got, int) and got != w:
                bad = True
    if bad:
        note = f" (model.json says z_size {z_size})" if "Z" in spec.shape else ""
        raise BundleError(
            f"{path}: {kind} {spec.name!r} is {dtype} {show(shape or ['?'])}, "
            f"expected {spec.dtype} {show(want)}{note}"
        )


SAMPLER_GRAPH = Graph(
    SAMPLER,
    "sampler",
    inputs=(
        Tensor("z", "float", ("B", "Z")),
        Tensor("temperature", "float", (1,)),
        Tensor("noise", "float", ("B", T, C)),  # standard Gumbel noise (model.sampling.gumbel)
        Tensor("mask", "bool", ("B", T, C), optional=True),  # allowed classes; default: all
        Tensor("style", "int64", ("B",), optional=True, needed_by="styles"),  # 0 = ANY_STYLE
        Tensor("fill", "float", ("B", drums.BARS), optional=True, needed_by="fills"),  # 1 = that bar is a fill
    ),
    outputs=(
        Tensor("classes", "int64", ("B", T)),
        Tensor("velocity", "float", ("B", T, V)),
        Tensor("offset", "float", ("B", T, V)),
    ),
)

ENCODER_GRAPH = Graph(
    ENCODER,
    "encoder",
    inputs=(
        Tensor("classes", "int64", ("B", T)),
        Tensor("velocity", "float", ("B", T, V)),
        Tensor("offset", "float", ("B", T, V)),
    ),
    outputs=(
        Tensor("mu", "float", ("B", "Z")),
        Tensor("logvar", "float", ("B", "Z")),
    ),
)
