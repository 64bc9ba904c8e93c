"""The package imports cheaply and exposes fetch both ways Riprap writes it."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "terratorch", "torchvision", "onnxruntime", "lightning")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_is_light():
    heavy = _run(
        "import sys, terramind_nyc; from terramind_nyc import fetch, fetch_many, Result, Settings; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert heavy == ""


@pytest.mark.parametrize(
    "code",
    [
        "import terramind_nyc.fetch\nf = terramind_nyc.fetch",
        "from terramind_nyc import fetch as f",
        "import terramind_nyc\nimport terramind_nyc.fetch\nfrom terramind_nyc import fetch as g\nf = terramind_nyc.fetch\nassert f is g",
    ],
)
def test_fetch_is_the_function_both_ways(code):
    out = _run(
        code + "\nimport sys, inspect, terramind_nyc.api as api\n"
        "assert f is api.fetch, f\nassert inspect.isfunction(f)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert out == ""


def test_public_surface():
    import terramind_nyc

    for name in terramind_nyc.__all__:
        assert getattr(terramind_nyc, name) is not None
    with pytest.raises(AttributeError):
        terramind_nyc.does_not_exist  # noqa: B018


def test_errors_inherit_builtins():
    from terramind_nyc import errors as e

    assert issubclass(e.InvalidLocationError, ValueError)
    assert issubclass(e.CheckpointNotFoundError, FileNotFoundError)
    assert issubclass(e.DeadlineExceededError, TimeoutError)
    assert issubclass(e.CatalogError, OSError)
    for name in e.__all__:
        cls = getattr(e, name)
        assert issubclass(cls, (e.TerramindNYCError, e.TerramindNYCWarning))
