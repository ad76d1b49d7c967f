"""The model-folder contract (model/bundle.py): every malformed or mismatched folder is one clear line."""

import hashlib
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from model import bundle
from performer.engine import Engine, EngineError
from tests.conftest import assert_one_line_error, run_cli


def _copy(model, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(model, dst)
    return dst


def _edit(folder, change) -> None:
    meta = json.loads((folder / "model.json").read_text())
    change(meta)
    (folder / "model.json").write_text(json.dumps(meta))


def _swap_graphs(folder) -> None:
    """Encoder and sampler swapped, with model.json's checksums made to match (so only the graphs tell)."""
    s, e = folder / "sampler.onnx", folder / "encoder.onnx"
    a, b = s.read_bytes(), e.read_bytes()
    s.write_bytes(b)
    e.write_bytes(a)
    _edit(folder, lambda m: m.update(files={n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in m["files"]}))


def _prior(weights, z=8):
    """A prior.npz (every style of the model gets ``weights``), listed in model.json."""

    def make(folder):
        n = len(json.loads((folder / "model.json").read_text()).get("styles", [])) + 1
        k = len(weights)
        np.savez(folder / "prior.npz", weights=np.tile(np.array(weights, np.float32), (n, 1)),
                 means=np.zeros((n, k, z), np.float32), scales=np.ones((n, k, z), np.float32))
        digest = hashlib.sha256((folder / "prior.npz").read_bytes()).hexdigest()
        _edit(folder, lambda m: m["files"].update({"prior.npz": digest}))

    return make


def _set(path, value):
    def change(meta):
        d = meta
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return change


# (id, how the folder is broken, words the one error line must contain)
CASES = [
    ("files-as-list", lambda f: _edit(f, _set(["files"], ["sampler.onnx", "encoder.onnx"])), ["files", "object"]),
    ("files-outside-folder", lambda f: _edit(f, _set(["files"], {"../x.onnx": "0" * 64})), ["files", "../x.onnx"]),
    ("z_size-not-a-number", lambda f: _edit(f, _set(["z_size"], "abc")), ["z_size", "'abc'"]),
    ("z_size-bool", lambda f: _edit(f, _set(["z_size"], True)), ["z_size"]),
    ("z_size-other-than-graph", lambda f: _edit(f, lambda m: (m.update(z_size=16), m.pop("attributes"))),
     ["input 'z'", "z_size 16"]),
    ("z_size-other-than-attributes", lambda f: _edit(f, _set(["z_size"], 16)), ["density", "z_size 16"]),
    ("temperature-default-hot", lambda f: _edit(f, _set(["temperature", "default"], "hot")), ["temperature", "default", "'hot'"]),
    ("temperature-inverted", lambda f: _edit(f, _set(["temperature", "min"], 1.5)), ["temperature", "min <= default"]),
    ("temperature-as-number", lambda f: _edit(f, _set(["temperature"], 0.5)), ["temperature", "object"]),
    ("vocabulary-as-string", lambda f: _edit(f, _set(["vocabulary"], "gm drums")), ["vocabulary", "object"]),
    ("vocabulary-other", lambda f: _edit(f, lambda m: m["vocabulary"]["output_pitches"].__setitem__(0, 35)),
     ["different vocabulary", "output_pitches"]),
    ("density-3-elements", lambda f: _edit(f, _set(["attributes", "density"], [0.1, 0.2, 0.3])), ["density", "(3,)", "z_size 8"]),
    ("density-not-numbers", lambda f: _edit(f, _set(["attributes", "density"], ["a"] * 8)), ["density", "numbers"]),
    ("attributes-as-list", lambda f: _edit(f, _set(["attributes"], [1, 2])), ["attributes", "object"]),
    ("format-other", lambda f: _edit(f, _set(["format"], 2)), ["format", "reads 1"]),
    ("no-z_size", lambda f: _edit(f, lambda m: m.pop("z_size")), ["no z_size"]),
    ("json-array", lambda f: (f / "model.json").write_text("[1, 2]"), ["corrupt"]),
    ("graphs-swapped", _swap_graphs, ["sampler.onnx", "no input 'z'", "swapped"]),
    ("sampler-missing", lambda f: (f / "sampler.onnx").unlink(), ["sampler.onnx", "missing"]),
    ("styles-as-string", lambda f: _edit(f, _set(["styles"], "rock")), ["styles", "list"]),
    ("styles-naming-any", lambda f: _edit(f, _set(["styles"], ["any"])), ["styles", "'any'"]),
    ("fills-as-string", lambda f: _edit(f, _set(["fills"], "yes")), ["fills", "true or false"]),
    ("prior-listed-but-missing", lambda f: (_edit(f, lambda m: m["files"].setdefault("prior.npz", "0" * 64)),
                                            (f / "prior.npz").unlink(missing_ok=True)), ["prior.npz", "missing"]),
    ("prior-nan-weights", _prior([float("nan"), 1.0]), ["prior.npz", "non-finite"]),
    ("prior-other-z", _prior([0.5, 0.5], z=3), ["prior.npz", "does not fit"]),
]


@pytest.mark.parametrize("break_it, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_broken_model_folder_is_one_engine_error(tiny_model, tmp_path, break_it, words):
    m = _copy(tiny_model, tmp_path)
    break_it(m)
    with pytest.raises(EngineError) as err:
        Engine.load(m)
    line = str(err.value)
    assert "\n" not in line
    for w in words:
        assert w.lower() in line.lower(), line


@pytest.mark.parametrize("case", ["z_size-not-a-number", "graphs-swapped", "density-3-elements", "temperature-default-hot"])
def test_a_broken_model_folder_is_one_cli_line(tiny_model, tmp_path, case):
    break_it, words = next(c[1:] for c in CASES if c[0] == case)
    m = _copy(tiny_model, tmp_path)
    break_it(m)
    assert_one_line_error(run_cli("sample", "--model", str(m), "--out", str(tmp_path / "out")), *words)
    assert not (tmp_path / "out").exists()


def test_a_swapped_encoder_is_caught_on_first_encode(tiny_model, tmp_path):
    """The encoder loads lazily (the live loop never encodes); its graph is checked then."""
    m = _copy(tiny_model, tmp_path)
    shutil.copy(m / "sampler.onnx", m / "encoder.onnx")
    _edit(m, lambda meta: meta.pop("files"))
    e = Engine.load(m)
    with pytest.raises(EngineError, match="encoder.onnx has no input 'classes'"):
        e.encode(e.sample(seed=1))


def test_the_shipped_and_the_exported_folders_pass_the_contract(tiny_model):
    from performer.engine import default_model_dir, verify

    for folder in (default_model_dir(), tiny_model):
        verify(folder)
        meta = bundle.read(folder)
        assert meta["vocabulary"] == bundle.vocabulary() and meta["format"] == bundle.FORMAT
        assert all(v.shape == (meta["z_size"],) for v in meta["attributes"].values())


def test_the_shipped_folder_stays_small():
    """The standard: the shipped model stays a few MB. runs/groove-q's folder was 12.6 MB with the tap
    encoder and humanizer in float32 and the prior stored raw; 8.8 MB with them in float16 (the
    sampler and encoder were float16 already) and the prior deflated."""
    import zipfile

    import onnx

    from performer.engine import default_model_dir

    folder = default_model_dir()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 9.5e6
    with zipfile.ZipFile(folder / bundle.PRIOR) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    for name in bundle.FILES + tuple(n for n in bundle.OPTIONAL_FILES if n.endswith(".onnx")):
        g = onnx.load(str(folder / name)).graph
        big = [i for i in g.initializer if np.prod(i.dims) >= 64 and i.data_type != onnx.TensorProto.BOOL]
        assert big and all(i.data_type == onnx.TensorProto.FLOAT16 for i in big), name


def test_an_optional_graph_input_is_fed_only_when_the_graph_has_it(tiny_engine):
    """What a new optional input (a style, a fill flag) relies on: the check reports which inputs exist."""
    sess = tiny_engine._sampler
    io = ([*sess.get_inputs(), *sess.get_overridable_initializers()], sess.get_outputs())
    names = bundle.SAMPLER_GRAPH.check(tiny_engine.folder, *io, tiny_engine.meta)
    new = bundle.Tensor("swing", "float", ("B",), optional=True, needed_by="swings")
    extra = bundle.Graph(bundle.SAMPLER, "sampler", bundle.SAMPLER_GRAPH.inputs + (new,), bundle.SAMPLER_GRAPH.outputs)
    assert extra.check(tiny_engine.folder, *io, tiny_engine.meta) == names  # absent, not needed: fine
    with pytest.raises(bundle.BundleError, match="no input 'swing'.*swings"):
        extra.check(tiny_engine.folder, *io, {**tiny_engine.meta, "swings": True})


def _arg(name, type_, shape):
    return SimpleNamespace(name=name, type=f"tensor({type_})", shape=list(shape))


SAMPLER_IO = (
    [_arg("z", "float", ["B", 8]), _arg("temperature", "float", [1]), _arg("noise", "float", ["B", 64, 512]),
     _arg("mask", "bool", ["Bm", 64, 512])],
    [_arg("classes", "int64", ["B", 64]), _arg("velocity", "float", ["B", 64, 9]), _arg("offset", "float", ["B", 64, 9])],
)


def test_a_condition_the_metadata_promises_must_be_a_graph_input(tmp_path):
    """styles / fills in model.json make the style / fill inputs required (a graph without them
    would silently play every groove as "any" and never fill)."""
    meta = {"z_size": 8, "styles": [], "fills": False}
    assert bundle.SAMPLER_GRAPH.check(tmp_path, *SAMPLER_IO, meta) == {"z", "temperature", "noise", "mask"}
    with pytest.raises(bundle.BundleError, match="no input 'style', but model.json's styles"):
        bundle.SAMPLER_GRAPH.check(tmp_path, *SAMPLER_IO, {**meta, "styles": ["rock"]})
    with pytest.raises(bundle.BundleError, match="no input 'fill', but model.json's fills"):
        bundle.SAMPLER_GRAPH.check(tmp_path, *SAMPLER_IO, {**meta, "fills": True})
    both = ([*SAMPLER_IO[0], _arg("style", "int64", ["B"]), _arg("fill", "float", ["B", 4])], SAMPLER_IO[1])
    assert {"style", "fill"} <= bundle.SAMPLER_GRAPH.check(tmp_path, *both, {**meta, "styles": ["rock"], "fills": True})
    wrong = ([*SAMPLER_IO[0], _arg("fill", "float", ["B", 16])], SAMPLER_IO[1])
    with pytest.raises(bundle.BundleError, match=r"input 'fill' is float \(B, 16\), expected float \(B, 4\)"):
        bundle.SAMPLER_GRAPH.check(tmp_path, *wrong, meta)
