"""The torch runtime: the tiled pass (against terratorch), inputs through it, subsets, T, threads, GPU."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fakes import assert_threads_agree, raw

from terramind_nyc.errors import BackendError, InvalidInputError
from terramind_nyc.model.backends import load_runtime
from terramind_nyc.model.compat import terratorch_imports
from terramind_nyc.model.runtime_torch import TorchRuntime, resolve_device
from terramind_nyc.testing.model import make_tiny_artifact, make_tiny_network, tiny_config


@pytest.fixture(scope="module")
def net():
    return make_tiny_network(seed=7)


@pytest.fixture(scope="module")
def runtime(net) -> TorchRuntime:
    return TorchRuntime(net, checkpoint={"id": "tiny", "sha256": "0" * 64})


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_artifact(tmp_path_factory.mktemp("rt") / "tiny", seed=7)


def standardised(h: int, w: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"S2L2A": rng.normal(size=(12, h, w)).astype(np.float32),
            "S1RTC": rng.normal(size=(2, h, w)).astype(np.float32),
            "DEM": rng.normal(size=(1, h, w)).astype(np.float32)}


def terratorch_probabilities(net, x: dict[str, np.ndarray], **kw) -> dict[str, np.ndarray]:
    """terratorch's tiled_inference over both heads at once (logits concatenated), then softmax."""
    with terratorch_imports():
        from terratorch.tasks.tiled_inference import tiled_inference

    heads = net.config.heads
    bounds = np.cumsum([0] + [len(h.classes) for h in heads])

    def forward(t):
        return torch.cat(list(net(t).values()), dim=1)

    with torch.inference_mode():
        out = tiled_inference(forward, {m: torch.from_numpy(a)[None] for m, a in x.items()},
                              crop=224, stride=192, delta=8, batch_size=16, **kw)[0]
    return {h.name: out[bounds[i]:bounds[i + 1]].softmax(0).numpy() for i, h in enumerate(heads)}


# ----------------------------------------------------------------------------------------
# the tiled pass against terratorch's tiled_inference
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("h", "w"), [(224, 224), (300, 520), (240, 230)])
def test_tiled_pass_matches_terratorch_tiled_inference(net, runtime, h, w):
    x = standardised(h, w, seed=h + w)
    ours = runtime.predict_standardised(x)
    theirs = terratorch_probabilities(net, x)
    for head in ours:
        assert ours[head].shape == (len(net.config.head(head).classes), h, w)
        np.testing.assert_allclose(ours[head], theirs[head], rtol=0, atol=1e-5)


def test_small_window_equals_terratorch_on_the_padded_tile(net, runtime):
    """Deliberate difference: terratorch would run the model on 100x100 as it is (not a multiple
    of TerraMind's 16 px patch); the runtime pads to one 224 tile (reflect, centred) and crops."""
    x = standardised(100, 100, seed=1)
    ours = runtime.predict_standardised(x)
    padded = {m: np.pad(a, ((0, 0), (62, 62), (62, 62)), mode="reflect") for m, a in x.items()}
    theirs = terratorch_probabilities(net, padded)
    for head in ours:
        np.testing.assert_allclose(ours[head], theirs[head][:, 62:162, 62:162], rtol=0, atol=1e-5)


@pytest.mark.parametrize(("h", "w"), [(224, 520), (100, 520)])
def test_strip_windows_use_one_row_of_tiles(net, runtime, h, w):
    """Deliberate difference: for a side one tile covers, terratorch adds a margin and a second,
    almost identical tile row (and fails when that side is shorter than the tile); the runtime
    uses one row, blended along the long side with terratorch's ramp. Checked against a direct
    computation with terratorch's blend mask."""
    with terratorch_imports():
        from terratorch.tasks.tiled_inference import get_blend_mask

    x = standardised(h, w, seed=3)
    ours = runtime.predict_standardised(x)
    top = (224 - h) // 2
    canvas = {m: np.pad(a, ((0, 0), (top, 224 - h - top), (8, 8)), mode="reflect") for m, a in x.items()}
    cw = w + 16
    cols = sorted(set(range(0, cw - 225, 192)) | {cw - 224})
    ramp = get_blend_mask(224, 192, 224, 192, 8)[104].numpy()  # 1-D ramp (+1e-6) along the long side
    acc = {hd.name: np.zeros((len(hd.classes), 224, cw), np.float32) for hd in net.config.heads}
    wsum = np.zeros(cw, np.float32)
    with torch.inference_mode():
        for c in cols:
            out = net({m: torch.from_numpy(a[:, :, c:c + 224].copy())[None] for m, a in canvas.items()})
            for hd, v in out.items():
                acc[hd][:, :, c + 8:c + 216] += v[0, :, :, 8:216].numpy() * ramp
            wsum[c + 8:c + 216] += ramp
    for hd in ours:
        logits = acc[hd][:, top:top + h, 8:8 + w] / wsum[8:8 + w]
        np.testing.assert_allclose(ours[hd], torch.from_numpy(logits).softmax(0).numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 300), (17, 5)])
def test_any_window_of_at_least_one_pixel(runtime, h, w):
    p = runtime.predict(raw(h, w))
    assert p.probabilities["lulc"].shape == (5, h, w) and p.probabilities["buildings"].shape == (2, h, w)
    np.testing.assert_allclose(p.probabilities["lulc"].sum(0), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------------------
# inputs through the runtime
# ----------------------------------------------------------------------------------------
def test_predict_standardises_with_the_config_statistics(runtime):
    x = raw(224, 224, seed=5)
    cfg = runtime.config
    manual = {m: ((a.astype(np.float32) - np.float32(cfg.modality(m).mean)[:, None, None])
                  / np.float32(cfg.modality(m).std)[:, None, None]) for m, a in x.items()}
    a = runtime.predict(x).probabilities
    b = runtime.predict_standardised(manual)
    for h in a:
        np.testing.assert_allclose(a[h], b[h], rtol=0, atol=1e-6)


def test_nodata_pixels_predict_like_the_mean(runtime):
    x = raw(224, 224, seed=2)
    mask = np.ones((224, 224), bool)
    mask[100:120, 50:90] = False
    a = runtime.predict(x, {"S2L2A": mask}).probabilities
    y = {m: v.astype(np.float32) for m, v in x.items()}
    y["S2L2A"][:, 100:120, 50:90] = np.asarray(runtime.config.modality("S2L2A").mean, np.float32)[:, None, None]
    b = runtime.predict(y).probabilities
    for h in a:
        np.testing.assert_allclose(a[h], b[h], rtol=0, atol=1e-5)


def test_a_single_band_modality_may_be_two_dimensional(runtime):
    x = raw(64, 64)
    a = runtime.predict({"S2L2A": x["S2L2A"], "DEM": x["DEM"][0]}).probabilities["lulc"]
    b = runtime.predict({"S2L2A": x["S2L2A"], "DEM": x["DEM"]}).probabilities["lulc"]
    np.testing.assert_array_equal(a, b)


def test_subsets_of_modalities_run(runtime):
    x = raw(224, 250, seed=4)
    full = runtime.predict(x)
    s2 = runtime.predict({"S2L2A": x["S2L2A"]})
    s2_dem = runtime.predict({"S2L2A": x["S2L2A"], "DEM": x["DEM"]})
    assert s2.modalities == ("S2L2A",) and s2_dem.modalities == ("S2L2A", "DEM")
    assert full.modalities == ("S2L2A", "S1RTC", "DEM") and full.n_tiles == 2
    for p in (s2, s2_dem):
        assert p.probabilities["buildings"].shape == (2, 224, 250)
        np.testing.assert_allclose(p.probabilities["buildings"].sum(0), 1.0, atol=1e-5)
    assert not np.allclose(s2.probabilities["lulc"], full.probabilities["lulc"])


def test_temporal_checkpoint_takes_a_time_axis():
    net = make_tiny_network(tiny_config(timesteps=2))
    rt = TorchRuntime(net)
    x = {m: np.stack([a, a], axis=1) for m, a in raw(230, 230).items()}
    p = rt.predict(x, {"S2L2A": np.ones((2, 230, 230), bool)})
    assert p.probabilities["lulc"].shape == (5, 230, 230)
    with pytest.raises(InvalidInputError, match="4-D array"):
        rt.predict(raw(230, 230))


# ----------------------------------------------------------------------------------------
# threads, devices
# ----------------------------------------------------------------------------------------
def test_four_threads_get_identical_results(runtime):
    assert_threads_agree(runtime, raw(224, 300, seed=9))


def test_device_names_are_checked():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BackendError, match="unknown device"):
        resolve_device("tpu")


def test_cuda_device_when_available(artifact_dir):
    if not torch.cuda.is_available():
        pytest.skip("no GPU visible to torch")
    rt = load_runtime(str(artifact_dir), device="auto")
    assert rt.device == "cuda"
    x = raw(300, 300)
    cpu = load_runtime(str(artifact_dir), device="cpu").predict(x).probabilities
    gpu = rt.predict(x).probabilities
    for h in cpu:
        np.testing.assert_allclose(gpu[h], cpu[h], atol=1e-3)
