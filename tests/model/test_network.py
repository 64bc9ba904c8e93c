"""The multi-head TerraMind network on terramind_v1_tiny with random weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from terramind_nyc.errors import CheckpointError, InvalidInputError
from terramind_nyc.model.compat import terratorch_imports
from terramind_nyc.model.config import ENCODERS, HeadSpec, ModalitySpec, ModelConfig
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


# ----------------------------------------------------------------------------------------
# per-head encoder variants (LoRA) and temporal_repeat
# ----------------------------------------------------------------------------------------
def _variant_config(**changes):
    import dataclasses

    from terramind_nyc.model.config import DEFAULT_HEADS, EncoderSpec, LoraSpec

    heads = tuple(dataclasses.replace(h, encoder=h.name) for h in DEFAULT_HEADS)
    return tiny_config(heads=heads, encoders=(EncoderSpec("lulc", LoraSpec(4, 8.0)), EncoderSpec("buildings", LoraSpec(4, 8.0))),
                       timesteps=4, temporal_pooling="concat", temporal_repeat=True, decoder_channels=(32, 16, 8, 4),
                       **changes)


@pytest.fixture(scope="module")
def variant_net() -> MultiHeadTerraMind:
    net = make_tiny_network(_variant_config(), seed=3)
    with torch.no_grad():
        for p in net.lora.parameters():
            p.normal_(0, 0.05)
    net.merge_lora()
    return net


def test_each_encoder_variant_runs_once_per_batch(variant_net):
    calls = []
    hooks = [m.register_forward_hook(lambda *a, name=name: calls.append(name))
             for name, m in [("base", variant_net.encoder), *variant_net.merged_encoders().items()]]
    try:
        with torch.inference_mode():
            out = variant_net(_x(variant_net.config, b=2, h=64, w=64))
    finally:
        for h in hooks:
            h.remove()
    assert sorted(calls) == ["buildings", "lulc"]  # the LoRA variants, each once; the bare base never
    assert list(out) == ["lulc", "buildings"] and out["buildings"].shape[:2] == (2, 2)


def test_merged_variants_share_every_tensor_but_the_lora_targets(variant_net):
    base = dict(variant_net.encoder.named_parameters())
    for name, enc in variant_net.merged_encoders().items():
        for k, p in enc.named_parameters():
            if k.endswith(("attn.qkv.weight", "attn.proj.weight")):
                block = int(k.split(".")[1])
                pair = variant_net.lora[name][block][k.split(".")[2] + "_" + k.split(".")[3]]
                scale = variant_net.config.encoder_spec(name).lora.scale
                torch.testing.assert_close(p, base[k] + scale * pair.lora_B @ pair.lora_A, rtol=0, atol=0)
            else:
                assert p is base[k], k


def test_one_pass_with_repeated_features_equals_the_temporal_wrapper_on_identical_steps(variant_net):
    with terratorch_imports():
        from terratorch.models.utils import TemporalWrapper

    x = _x(variant_net.config, b=2, h=64, w=64, seed=6)
    wrapper = TemporalWrapper(variant_net.merged_encoders()["lulc"], pooling="concat", n_timestamps=4)
    with torch.inference_mode():
        ours = [torch.cat([f] * 4, dim=-1) for f in variant_net.encode("lulc", x)]  # one copy, repeated
        theirs = wrapper({m: v[:, :, None].repeat(1, 1, 4, 1, 1) for m, v in x.items()})
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.shape[-1] == 4 * ENCODERS["terramind_v1_tiny"][1]
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_merged_weights_follow_loaded_weights_and_training_reaches_the_factors():
    net = make_tiny_network(_variant_config(), seed=4)
    before = net(_x(net.config, h=64, w=64, seed=1))["lulc"].detach()
    state = net.state_dict()
    state["lora.lulc.0.attn_qkv.lora_B"] = torch.full_like(state["lora.lulc.0.attn_qkv.lora_B"], 0.1)
    net.load_state_dict(state)
    with torch.inference_mode():
        after = net(_x(net.config, h=64, w=64, seed=1))
    assert not torch.equal(before, after["lulc"])  # the merged copy was rebuilt from the new factors
    net.train()
    out = net(_x(net.config, h=64, w=64, seed=1))
    (out["lulc"].sum() + out["buildings"].sum()).backward()
    assert net.lora["lulc"][0]["attn_qkv"].lora_A.grad is not None
    assert float(net.lora["buildings"][3]["attn_proj"].lora_B.grad.abs().sum()) > 0
    net.eval()  # the differentiable path computes what the merged copy does
    x = _x(net.config, h=64, w=64, seed=2)
    with torch.no_grad():
        functional = net._encode_lora_functional("buildings", x)
        merged = net.merged_encoders()["buildings"](x)
    for a, b in zip(functional, merged, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_the_state_dict_holds_the_base_once_and_each_variants_factors():
    net = make_tiny_network(_variant_config(), seed=5)
    keys = list(net.state_dict())
    assert sum(k.startswith("encoder.") for k in keys) == len(net.encoder.state_dict())
    assert {k.split(".")[1] for k in keys if k.startswith("lora.")} == {"lulc", "buildings"}
    assert {k.split(".")[1] for k in keys if k.startswith("necks.")} == {"lulc", "buildings"}
    assert not any("_merged" in k for k in keys)


def test_folding_the_repeated_copies_into_the_weights_is_exact():
    """A layer reading T identical copies concatenated equals the folded layer reading one."""
    from terramind_nyc.model.network import fold_repeated

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 5, generator=g)
    conv = torch.nn.Conv2d(2 * 4 * 6, 3, 3)  # two concatenated feature maps, each 4 copies of 6 channels
    folded = torch.nn.Conv2d(2 * 6, 3, 3)
    with torch.no_grad():
        folded.weight.copy_(fold_repeated(conv.weight, folded.weight.shape, 4, 6))
        folded.bias.copy_(conv.bias)
        y = torch.cat([x] * 4 + [2 * x] * 4, dim=1)
        torch.testing.assert_close(folded(torch.cat([x, 2 * x], dim=1)), conv(y), rtol=0, atol=1e-5)
    up = torch.nn.ConvTranspose2d(4 * 6, 7, 2, 2)  # the pyramid's first layers: input channels on axis 0
    assert fold_repeated(up.weight, (6, 7, 2, 2), 4, 6).shape == (6, 7, 2, 2)
    with pytest.raises(CheckpointError, match="cannot be folded"):
        fold_repeated(up.weight, (5, 7, 2, 2), 4, 6)
