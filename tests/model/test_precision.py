"""The precision policy: fp32 | bf16 | auto, chosen by the hardware, scoped per pass, never leaked.

The tests run on CPUs with and without bf16 units: where a test needs one kind, it says so by
giving ``resolve_precision`` / ``cpu_bf16_flags`` the flags, instead of reading this machine's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import raw

from terramind_nyc.cli import cli
from terramind_nyc.errors import PrecisionFallbackWarning, SettingsError
from terramind_nyc.model import precision as precision_mod
from terramind_nyc.model.precision import (
    CPU_BF16_FLAGS,
    PrecisionChoice,
    choose_precision,
    cpu_bf16_flags,
    cpu_has_bf16,
    resolve_precision,
)
from terramind_nyc.settings import Settings

LEGACY = ("highest", "high", "medium")


@pytest.fixture(autouse=True)
def _fresh_warnings():
    precision_mod.reset_warnings()
    yield
    precision_mod.reset_warnings()


# ----------------------------------------------------------------------------------------
# hardware and policy (no torch)
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "want"), [
    ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, ("amx_bf16", "avx512_bf16")),
    ({"avx512f", "avx512_bf16"}, ("avx512_bf16",)),
    ({"avx2", "fma", "avx512f"}, ()),
    (set(), ()),
])
def test_cpu_bf16_flags_from_a_flag_list(flags, want):
    assert cpu_bf16_flags(flags) == want
    assert cpu_has_bf16(flags) is bool(want)


def test_this_machines_flags_come_from_proc_cpuinfo():
    have = set(cpu_bf16_flags())
    assert have <= set(CPU_BF16_FLAGS)
    if sys.platform.startswith("linux"):
        text = Path("/proc/cpuinfo").read_text().split()
        assert have == {f for f in CPU_BF16_FLAGS if f in text}


@pytest.mark.parametrize(("requested", "supported", "used"), [
    ("fp32", True, "fp32"), ("fp32", False, "fp32"),
    ("bf16", True, "bf16"), ("bf16", False, "fp32"),
    ("auto", True, "bf16"), ("auto", False, "fp32"),
])
def test_the_policy_table(requested, supported, used):
    assert choose_precision(requested, bf16_supported=supported) == used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionFallbackWarning)
        choice = resolve_precision(requested, bf16_supported=supported, where="torch on cpu")
    assert isinstance(choice, PrecisionChoice)
    assert (choice.requested, choice.used) == (requested, used) and choice.reason


def test_bf16_without_support_warns_once_and_runs_fp32():
    with pytest.warns(PrecisionFallbackWarning, match=r"precision=bf16 .* torch on cpu has no bf16 support "
                                                       r"\(no units here\); running fp32"):
        c = resolve_precision("bf16", bf16_supported=False, where="torch on cpu", why_not="no units here")
    assert c.used == "fp32" and "bf16 requested" in c.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise
        assert resolve_precision("bf16", bf16_supported=False, where="torch on cpu", why_not="no units here").used \
            == "fp32"
        assert resolve_precision("auto", bf16_supported=False, where="torch on cpu").used == "fp32"  # auto: quiet


def test_unknown_precisions_are_refused():
    with pytest.raises(SettingsError, match="precision must be one of"):
        resolve_precision("fp16", bf16_supported=True, where="x")
    with pytest.raises(SettingsError, match="`precision` must be one of"):
        Settings(precision="half")  # type: ignore[arg-type]


def test_the_setting_and_its_environment_variable():
    assert Settings().precision == "auto"
    assert Settings.from_env({"TERRAMIND_NYC_PRECISION": "bf16"}).precision == "bf16"
    with pytest.raises(SettingsError):
        Settings.from_env({"TERRAMIND_NYC_PRECISION": "int8"})


def test_info_states_the_precision_and_the_cpu_flags():
    res = CliRunner().invoke(cli, ["--precision", "fp32", "info", "--json"])
    assert res.exit_code == 0, res.output
    p = json.loads(res.output)["precision"]
    assert p["setting"] == "fp32" and p["cpu_bf16_flags"] == list(cpu_bf16_flags())
    assert p["runs"] and set(p["runs"].values()) == {"fp32"}
    text = CliRunner().invoke(cli, ["info"]).output
    assert "precision: auto" in text and "bf16 flags:" in text and "auto order:" in text


# ----------------------------------------------------------------------------------------
# torch: imports and passes leave the caller's setting alone
# ----------------------------------------------------------------------------------------
torch_only = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("torch") is None, reason="needs the torch extra")


def _in_fresh_process(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


@torch_only
@pytest.mark.parametrize("before", LEGACY)
def test_importing_terratorch_through_the_helper_keeps_the_callers_setting(before):
    code = ("import torch\n"
            f"torch.set_float32_matmul_precision({before!r})\n"
            "from terramind_nyc.model.compat import terratorch_imports\n"
            "with terratorch_imports():\n"
            "    from terratorch.registry import BACKBONE_REGISTRY\n"
            "from terramind_nyc.model.network import build_network\n"
            "from terramind_nyc.testing.model import tiny_config\n"
            "build_network(tiny_config())\n"
            "print(torch.get_float32_matmul_precision())\n")
    assert _in_fresh_process(code).splitlines()[-1] == before


@torch_only
def test_a_plain_terratorch_import_is_the_trap_the_helper_closes():
    """terratorch 1.2.11 sets "medium" for the whole process at import (DESIGN section 8)."""
    code = ("import torch\n"
            "from terramind_nyc.model.compat import ensure_torchvision_importable\n"
            "ensure_torchvision_importable()\n"
            "import terratorch\n"
            "print(torch.get_float32_matmul_precision())\n")
    got = _in_fresh_process(code).splitlines()[-1]
    if got == "highest":
        pytest.skip("this terratorch no longer changes the matmul precision at import")
    assert got == "medium"


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    pytest.importorskip("torch")
    from terramind_nyc.testing.model import make_tiny_artifact

    return make_tiny_artifact(tmp_path_factory.mktemp("precision") / "tiny", seed=11)


def _observe(rt):
    """Record (matmul precision, autocast on) inside each forward pass of a TorchRuntime."""
    import torch

    seen: list[tuple[str, bool]] = []

    def hook(module, args):
        seen.append((torch.get_float32_matmul_precision(), torch.is_autocast_enabled("cpu")))

    handle = rt.network.register_forward_pre_hook(hook)
    return seen, handle


@torch_only
@pytest.mark.parametrize("before", LEGACY)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_torch_pass_runs_its_precision_and_leaves_the_callers_setting(tiny_artifact, monkeypatch, before,
                                                                       precision):
    import torch

    from terramind_nyc.model import backends as rt_mod

    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: ("avx512_bf16",))  # bf16 runs on any CPU here
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision(before)
        rt = rt_mod.load_runtime(str(tiny_artifact), backend="torch", device="cpu", precision=precision)
        assert torch.get_float32_matmul_precision() == before  # loading changed nothing
        seen, handle = _observe(rt)
        try:
            rt.predict(raw(100, 120))
        finally:
            handle.remove()
        assert torch.get_float32_matmul_precision() == before
        assert seen and all(s == ("highest", precision == "bf16") for s in seen)
        assert rt.model_info().precision == precision
    finally:
        torch.set_float32_matmul_precision(old)


@torch_only
def test_a_caller_on_torchs_per_backend_api_gets_its_values_back(tiny_artifact):
    import torch

    from terramind_nyc.model.backends import load_runtime

    rt = load_runtime(str(tiny_artifact), backend="torch", device="cpu", precision="fp32")
    mk = torch.backends.mkldnn.matmul
    try:
        mk.fp32_precision = "bf16"
        seen: list[str] = []
        handle = rt.network.register_forward_pre_hook(lambda m, a: seen.append(mk.fp32_precision))
        try:
            rt.predict(raw(64, 64))
        finally:
            handle.remove()
        assert seen == ["ieee"] and mk.fp32_precision == "bf16"
    finally:
        torch.set_float32_matmul_precision("highest")


@torch_only
def test_concurrent_passes_share_one_scope_and_restore_the_setting():
    import torch

    from terramind_nyc.model.precision import torch_numerics

    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    inside: list[str] = []
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with torch_numerics("bf16" if i % 2 else "fp32"):
            barrier.wait(timeout=30)
            inside.append(torch.get_float32_matmul_precision())
            barrier.wait(timeout=30)  # all four inside at once, then leave in any order

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert inside == ["highest"] * 4
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(old)


@torch_only
def test_bf16_agrees_with_fp32_on_the_tiny_model(tiny_artifact, monkeypatch):
    from terramind_nyc.model import backends as rt_mod

    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: ("amx_bf16",))
    x = raw(300, 260, seed=5)
    ref = rt_mod.load_runtime(str(tiny_artifact), backend="torch", device="cpu", precision="fp32").predict(x)
    bf = rt_mod.load_runtime(str(tiny_artifact), backend="torch", device="cpu", precision="bf16").predict(x)
    for h, p in ref.probabilities.items():
        q = bf.probabilities[h]
        assert q.dtype == np.float32 and np.isfinite(q).all()
        assert float((q.argmax(0) == p.argmax(0)).mean()) >= 0.99, h
        assert float(np.abs(q - p).max()) < 0.1  # bf16, not garbage


@torch_only
def test_torch_auto_follows_the_cpu_flags(tiny_artifact, monkeypatch):
    from terramind_nyc.model import backends as rt_mod

    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: ())
    rt = rt_mod.load_runtime(str(tiny_artifact), backend="torch", device="cpu", precision="auto")
    assert rt.precision.used == "fp32" and "amx_bf16" in rt.precision.reason
    with pytest.warns(PrecisionFallbackWarning, match="no bf16 support"):
        rt = rt_mod.load_runtime(str(tiny_artifact), backend="torch", device="cpu", precision="bf16")
    assert rt.model_info().precision == "fp32" and rt.model_info().precision_requested == "bf16"
    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert rt_mod.load_runtime(str(tiny_artifact), backend="torch", device="cpu").precision.used == "bf16"
