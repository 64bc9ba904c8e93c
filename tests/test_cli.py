import json

from click.testing import CliRunner

from terramind_nyc.cli import cli


def test_info_json_reports_backends_and_unreachable_local_checkpoint(tmp_path):
    missing = tmp_path / "no-such-artifact"
    res = CliRunner().invoke(cli, ["--checkpoint", str(missing), "info", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data["backends"]) >= {"torch", "onnx"}
    assert data["checkpoint"]["reachable"] is False
    assert "no directory" in data["checkpoint"]["detail"]


def test_info_text(tmp_path):
    res = CliRunner().invoke(cli, ["--checkpoint", str(tmp_path), "info"])
    assert res.exit_code == 0
    assert "checkpoint:" in res.output and "missing config.json" in res.output
