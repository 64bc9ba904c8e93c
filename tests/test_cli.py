import json
import logging

import pytest
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


@pytest.mark.parametrize("env, expected", [
    ({"TERRAMIND_NYC_DEADLINE_S": "abc"}, ("TERRAMIND_NYC_DEADLINE_S", "'abc'", "deadline_s")),
    ({"TERRAMIND_NYC_CATALOG_PROVIDER": "nope"}, ("catalog_provider", "'nope'")),
    ({"TERRAMIND_NYC_HTTP_RETRIES": "-1"}, ("http_retries", "-1")),
])
@pytest.mark.parametrize("command", [["info"], ["info", "--json"], ["-vv", "fetch", "40.75", "-73.98"]])
def test_an_invalid_environment_value_is_one_error_line(env: dict[str, str], expected: tuple[str, ...],
                                                        command: list[str]) -> None:
    res = CliRunner().invoke(cli, command, env=env)
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)  # no traceback
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: SettingsError: "), res.stderr
    assert all(e in lines[0] for e in expected), lines[0]
    assert "Traceback" not in res.output and res.stdout == ""


def test_a_library_error_in_a_command_is_one_error_line() -> None:
    res = CliRunner().invoke(cli, ["fetch", "51.5", "-0.12"])  # London: refused before any I/O
    assert res.exit_code == 1
    assert res.stderr.startswith("error: OutsideDomainError: point (51.5, -0.12) lies outside the NYC domain")
    assert len(res.stderr.strip().splitlines()) == 1


def test_usage_errors_keep_click_semantics() -> None:
    res = CliRunner().invoke(cli, ["-q", "-v", "info"])
    assert res.exit_code == 2 and "contradict" in res.stderr


def test_verbose_help_documents_the_levels() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    text = " ".join(res.output.split())
    assert "-v info" in text and "-vv debug of terramind_nyc" in text and "-vvv debug of every library" in text
    assert "redacted" in text


@pytest.mark.parametrize("flags", [[], ["-q"], ["-v"], ["-vv"], ["-vvv"]])
def test_logging_is_configured_per_command_and_put_back(flags: list[str], tmp_path) -> None:
    """-v / -vv raise terramind_nyc's logger only, -vvv the root; every handler redacts; afterwards
    the levels, handlers and filters are what they were (the CLI may run inside another program)."""
    from terramind_nyc.logging import THIRD_PARTY_LOGGERS, RedactSecretsFilter

    root, pkg, rio = logging.getLogger(), logging.getLogger("terramind_nyc"), logging.getLogger("rasterio")
    before = (root.level, pkg.level, [lg.level for lg in map(logging.getLogger, THIRD_PARTY_LOGGERS)],
              list(root.handlers), [list(h.filters) for h in root.handlers])
    seen: dict[str, object] = {}

    @cli.command("_probe", hidden=True)
    def probe() -> None:
        seen.update(root=root.level, pkg=pkg.getEffectiveLevel(), rio=rio.getEffectiveLevel(),
                    filtered=all(any(isinstance(f, RedactSecretsFilter) for f in h.filters) for h in root.handlers),
                    ours=sum(h.get_name() == "terramind-nyc-cli" for h in root.handlers))

    try:
        res = CliRunner().invoke(cli, [*flags, "--checkpoint", str(tmp_path), "_probe"])
    finally:
        cli.commands.pop("_probe")
    assert res.exit_code == 0, res.output
    v = flags[0].count("v") if flags and flags[0] != "-q" else 0
    quiet = flags == ["-q"]
    assert seen["pkg"] == (logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG, logging.DEBUG)[v])
    assert seen["root"] == (logging.ERROR if quiet else logging.DEBUG if v >= 3 else logging.WARNING)
    assert seen["rio"] == (logging.ERROR if quiet else logging.DEBUG if v >= 3 else logging.WARNING)
    assert seen["filtered"] is True and seen["ours"] == 1
    after = (root.level, pkg.level, [lg.level for lg in map(logging.getLogger, THIRD_PARTY_LOGGERS)],
             list(root.handlers), [list(h.filters) for h in root.handlers])
    assert after == before
