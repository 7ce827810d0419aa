"""docs/configuration.md's generated table covers every `run` option, and kustomize's
config/manager passes options the CLI accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiment_lab.binaries import REPO_ROOT
from experiment_operator import cli
from experiment_operator.manifests import configuration, install


def test_every_option_of_run_is_in_the_table() -> None:
    table = configuration.render_configuration(REPO_ROOT)
    _, run = cli.parsers()
    flags = [f for a in run._actions for f in a.option_strings if f not in ("-h", "--help")]
    assert len(flags) == len(set(flags)) > 10
    for flag in flags:
        assert f"`{flag}" in table
    for option in configuration.documented_options():
        assert f"`{option.env}" in table


def test_help_without_default_or_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def parsers() -> tuple[object, object]:
        top, run = cli.parsers()
        run.add_argument("--new", help="undocumented")
        return top, run

    monkeypatch.setattr(configuration, "parsers", parsers)
    with pytest.raises(ValueError, match="--new"):
        configuration.documented_options()


def test_config_manager_passes_options_the_cli_accepts() -> None:
    container = install.deployment()["spec"]["template"]["spec"]["containers"][0]
    known = {o.env for o in configuration.documented_options()}
    assert {e["name"] for e in container["env"]} <= known
    top, run = cli.parsers()
    args = top.parse_args(["run", *container["args"]])
    options = cli.run_options(run, args, {}, Path("/nonexistent"))
    assert options.leader_elect is True
    assert options.metrics_bind_address == ("0.0.0.0", install.METRICS_PORT)
    assert options.health_probe_bind_address == ("0.0.0.0", install.PROBE_PORT)


def test_the_hand_written_prose_is_kept() -> None:
    rendered = configuration.render_configuration(REPO_ROOT)
    assert rendered.startswith("# Configuration\n")
    assert "## Helm values that are not operator options" in rendered
