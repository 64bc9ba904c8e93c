"""model.safetensors: read without unpickling; every way the weights can be bad is named before any is read."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

from terramind_nyc.errors import CheckpointError
from terramind_nyc.model.files import CONFIG_FILE, WEIGHTS_FILE
from terramind_nyc.model.safetensors_io import read_header

torch = pytest.importorskip("torch")
from terramind_nyc.model.artifact import load_artifact


def test_the_header_names_every_tensor_in_file_order(tiny_dir: Path):
    header = read_header(tiny_dir / WEIGHTS_FILE)
    art = load_artifact(tiny_dir)
    sd = art.network.state_dict()
    assert set(header.tensors) == set(sd) and sorted(header.order) == sorted(sd)
    assert all(header.tensors[k] == ("F32", tuple(v.shape)) for k, v in sd.items() if v.dtype == torch.float32)
    assert header.metadata["format"] == "pt" and header.data_start > 8


def test_truncated_weights_raise_checkpoint_error(copy_dir: Path):
    w = copy_dir / WEIGHTS_FILE
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors.*truncated"):
        load_artifact(copy_dir)
    w.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        load_artifact(copy_dir)


def test_weights_longer_than_their_header_are_refused(copy_dir: Path):
    w = copy_dir / WEIGHTS_FILE
    w.write_bytes(w.read_bytes() + b"\0" * 16)
    with pytest.raises(CheckpointError, match=r"longer than its header says: the header describes \d+ bytes"):
        load_artifact(copy_dir)


def test_class_count_disagreeing_with_the_weights_is_named(copy_dir: Path):
    d = json.loads((copy_dir / CONFIG_FILE).read_text())
    d["heads"][0]["classes"].append("glacier")
    d["heads"][0]["colors"].append("#ffffff")
    d["heads"][0]["labels"].append("Glacier")
    (copy_dir / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(CheckpointError) as e:
        load_artifact(copy_dir)
    msg = str(e.value)
    assert "head 'lulc' has 5 classes in the weights but 6 in config.json" in msg
    assert "heads.lulc." in msg and "expected [6" in msg


def test_weights_of_another_encoder_are_named(copy_dir: Path):
    d = json.loads((copy_dir / CONFIG_FILE).read_text())
    d["encoder"] = "terramind_v1_small"
    (copy_dir / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="another shape"):
        load_artifact(copy_dir)


def test_missing_and_unexpected_weights_are_named(copy_dir: Path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(copy_dir / WEIGHTS_FILE))
    sd.pop("heads.buildings.head.2.bias")
    sd["extra.weight"] = torch.zeros(3)
    save_file(sd, str(copy_dir / WEIGHTS_FILE))
    with pytest.raises(CheckpointError) as e:
        load_artifact(copy_dir)
    assert "heads.buildings.head.2.bias" in str(e.value) and "extra.weight" in str(e.value)


def test_weights_of_another_dtype_are_named(copy_dir: Path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(copy_dir / WEIGHTS_FILE))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, str(copy_dir / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="another dtype.*F16 \\(expected F32\\)"):
        load_artifact(copy_dir)


def test_a_pickle_is_never_unpickled(copy_dir: Path, monkeypatch: pytest.MonkeyPatch):
    class Boom:
        def __reduce__(self):
            return (print, ("unpickled!",))

    (copy_dir / WEIGHTS_FILE).write_bytes(pickle.dumps({"w": Boom()}) + b"\0" * 64)
    calls = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file|corrupt header"):
        load_artifact(copy_dir)
    assert calls == []


def test_corrupt_header_is_reported(copy_dir: Path):
    w = copy_dir / WEIGHTS_FILE
    data = bytearray(w.read_bytes())
    data[8:20] = b"#" * 12
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt header"):
        load_artifact(copy_dir)


# ----------------------------------------------------------------------------------------
# Headers a broken or foreign file may have: each a CheckpointError naming the file and the fix
# ----------------------------------------------------------------------------------------
def _file(tmp_path: Path, header: bytes | str, data: bytes = b"", declared: int | None = None) -> Path:
    import struct

    header = header.encode() if isinstance(header, str) else header
    p = tmp_path / WEIGHTS_FILE
    p.write_bytes(struct.pack("<Q", len(header) if declared is None else declared) + header + data)
    return p


def _tensor(dtype: str = "F32", shape: object = (1,), offsets: object = (0, 4)) -> str:
    return json.dumps({"w": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}})  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("header", "data", "declared", "message"),
    [
        pytest.param("[" * 100_000 + "]" * 100_000, b"", None, "corrupt header", id="nested-100000-deep"),
        pytest.param('{"a": ' * 5000 + "1" + "}" * 5000, b"", None, "recursion limit", id="nested-objects"),
        pytest.param("hello world!", b"", None, "corrupt header", id="not-json"),
        pytest.param(b"\xff\xfe" * 8, b"", None, "invalid UTF-8", id="not-utf8"),
        pytest.param("[1, 2, 3]", b"", None, "corrupt header", id="a-list"),
        pytest.param("{}", b"", (100 << 20) + 1, "truncated or not a safetensors file", id="declared-over-100-mb"),
        pytest.param("{}", b"", 2**64 - 1, "truncated or not a safetensors file", id="declared-2-64"),
        pytest.param(_tensor(offsets=(-4, 0)), b"\0" * 4, None, "expected usize", id="negative-offset"),
        pytest.param(_tensor(offsets=(0, 400)), b"\0" * 4, None, "corrupt header", id="offsets-past-the-end"),
        pytest.param(_tensor(offsets=(0, 10**30)), b"\0" * 4, None, "corrupt header", id="offset-huge"),
        pytest.param(_tensor(dtype="Q7"), b"\0" * 4, None, "unknown variant `Q7`", id="unknown-dtype"),
        pytest.param(_tensor(shape=(2**62, 2**62)), b"\0" * 4, None, "overflow", id="shape-overflows"),
        pytest.param(_tensor(), b"\0" * 8, None, "longer than its header says", id="data-longer-than-described"),
        pytest.param(json.dumps({"__metadata__": {"a": 1}}), b"", None, "expected a string", id="metadata-not-strings"),
        pytest.param("", b"", None, "corrupt header", id="empty-header"),
    ],
)
def test_bad_headers_are_checkpoint_errors(tmp_path: Path, header, data, declared, message):
    p = _file(tmp_path, header, data, declared)
    with pytest.raises(CheckpointError, match=re.escape(message)) as e:
        read_header(p)
    assert str(p) in str(e.value) and "re-download or re-export the artifact" in str(e.value)
    assert len(str(e.value)) < 700


def test_short_files_and_folders_are_checkpoint_errors(tmp_path: Path):
    from terramind_nyc.errors import CheckpointNotFoundError

    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"truncated \(0 bytes\)"):
        read_header(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_header(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="file not found"):
        read_header(tmp_path / "missing.safetensors")


def test_a_well_formed_header_is_read(tmp_path: Path):
    h = read_header(_file(tmp_path, _tensor(), b"\0" * 4))
    assert h.tensors == {"w": ("F32", (1,))} and h.order == ("w",) and h.data_start == 8 + len(_tensor())
