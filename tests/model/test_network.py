"""The multi-head TerraMind network on terramind_v1_tiny with random weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from terramind_nyc.errors import InvalidInputError
from terramind_nyc.model.compat import terratorch_imports
from terramind_nyc.model.config import HeadSpec, ModalitySpec, ModelConfig
from terramind_nyc.model.network import MultiHeadTerraMind, build_network, v1_weight_name
from terramind_nyc.testing.model import make_tiny_network, tiny_config


@pytest.fixture(scope="module")
def net() -> MultiHeadTerraMind:
    return make_tiny_network(seed=1)


def _x(config: ModelConfig, b: int = 1, h: int = 224, w: int = 224, seed: int = 0, t: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = (lambda c: (b, c, h, w)) if t == 1 else (lambda c: (b, c, t, h, w))
    return {m.name: torch.randn(*shape(len(m.bands)), generator=g) for m in config.modalities}


def test_two_heads_give_logits_at_input_resolution(net):
    with torch.inference_mode():
        out = net(_x(net.config, b=2))
    assert list(out) == ["lulc", "buildings"]
    assert out["lulc"].shape == (2, 5, 224, 224) and out["buildings"].shape == (2, 2, 224, 224)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_each_head_is_the_computation_of_a_terratorch_single_head_model(net):
    """One head's path equals an EncoderDecoderFactory model holding the same weights."""
    with terratorch_imports():
        from terratorch.models import EncoderDecoderFactory

    cfg = net.config
    sd = net.state_dict()
    x = _x(cfg, seed=4)
    with torch.inference_mode():
        ours = net(x)
    for head in cfg.heads:
        model = EncoderDecoderFactory().build_model(
            task="segmentation", backbone=cfg.encoder, backbone_modalities=list(cfg.modality_names),
            backbone_pretrained=False,
            necks=[{"name": "SelectIndices", "indices": list(cfg.resolved_neck_indices)},
                   {"name": "ReshapeTokensToImage", "remove_cls_token": False},
                   {"name": "LearnedInterpolateToPyramidal"}],
            decoder="UNetDecoder", decoder_channels=list(cfg.decoder_channels), num_classes=len(head.classes),
        ).eval()
        mapped = {}
        for k, v in sd.items():
            if k.startswith(("encoder.", "necks.shared.")):
                mapped[v1_weight_name(k)] = v  # terratorch names the neck ``neck.*``
            elif k.startswith(f"decoders.{head.name}."):
                mapped["decoder." + k[len(f"decoders.{head.name}."):]] = v
            elif k.startswith(f"heads.{head.name}."):
                mapped["head." + k[len(f"heads.{head.name}."):]] = v
        model.load_state_dict(mapped, strict=True)
        with torch.inference_mode():
            single = model(x).output
        torch.testing.assert_close(ours[head.name], single, rtol=0, atol=1e-5)


def test_any_subset_of_modalities_runs(net):
    x = _x(net.config, seed=2)
    with torch.inference_mode():
        full = net(x)
        s2 = net({"S2L2A": x["S2L2A"]})
        s2_dem = net({"DEM": x["DEM"], "S2L2A": x["S2L2A"]})
        s2_dem_again = net({"S2L2A": x["S2L2A"], "DEM": x["DEM"]})
    assert s2["lulc"].shape == full["lulc"].shape
    assert not torch.allclose(s2["lulc"], full["lulc"])
    assert not torch.allclose(s2_dem["lulc"], s2["lulc"])
    for h in full:  # dict order does not matter: the config's order is used
        assert torch.equal(s2_dem[h], s2_dem_again[h])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "at least one modality"),
        ({"S2L1C": torch.zeros(1, 13, 224, 224)}, "unknown modality"),
        ({"S2L2A": torch.zeros(1, 10, 224, 224)}, "10 bands, the model takes 12"),
        ({"S2L2A": torch.zeros(12, 224, 224)}, "4-D tensor"),
        ({"S2L2A": torch.zeros(1, 12, 100, 100)}, "multiples of 16"),
        ({"S2L2A": torch.zeros(1, 12, 224, 224), "DEM": torch.zeros(1, 1, 256, 224)}, "differ in size"),
    ],
)
def test_bad_inputs_are_explained(net, inputs, message):
    with pytest.raises(InvalidInputError, match=message):
        net(inputs)


def test_a_third_head_is_added_by_config_alone():
    flood = HeadSpec("flood", ("dry", "flooded"), ("#ffffff", "#0000ff"), threshold=0.4)
    cfg = tiny_config(heads=(*ModelConfig().heads, flood))
    net = build_network(cfg).eval()
    with torch.inference_mode():
        out = net(_x(cfg))
    assert list(out) == ["lulc", "buildings", "flood"] and out["flood"].shape == (1, 2, 224, 224)


def test_temporal_input_goes_through_terratorchs_temporal_wrapper():
    with terratorch_imports():
        from terratorch.models.utils import TemporalWrapper

    cfg = tiny_config(timesteps=3)
    net = build_network(cfg).eval()
    assert isinstance(net.encoder, TemporalWrapper)
    x = _x(cfg, t=3)
    with torch.inference_mode():
        out = net(x)
        sub = net({"S2L2A": x["S2L2A"]})
    assert out["lulc"].shape == (1, 5, 224, 224) and sub["buildings"].shape == (1, 2, 224, 224)
    with pytest.raises(InvalidInputError, match="T=3"):
        net({"S2L2A": torch.zeros(1, 12, 224, 224)})


def test_band_subsets_from_the_config_set_the_input_channels():
    s2 = ModalitySpec("S2L2A", ("B02", "B03", "B04", "B08"), (1.0,) * 4, (2.0,) * 4)
    cfg = tiny_config(modalities=(s2, ModelConfig().modality("DEM")))
    net = build_network(cfg).eval()
    with torch.inference_mode():
        out = net({"S2L2A": torch.randn(1, 4, 224, 224), "DEM": torch.randn(1, 1, 224, 224)})
    assert out["lulc"].shape == (1, 5, 224, 224)
    with pytest.raises(InvalidInputError, match="B02, B03, B04, B08"):
        net({"S2L2A": torch.randn(1, 12, 224, 224)})


def test_inference_layout_changes_nothing_but_rounding(net):
    import copy

    prepared = copy.deepcopy(net).prepare_for_inference("cpu")
    assert prepared.decoders["lulc"].decoder.blocks[0].conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = _x(net.config, seed=5)
    with torch.inference_mode():
        a, b = net(x), prepared(x)
    for h in a:
        torch.testing.assert_close(a[h], b[h], rtol=1e-5, atol=1e-4)  # conv summation order differs by layout
