"""The options table of docs/configuration.md, generated from `experiment-operator run`'s
argparse parser (the text `--help` prints), so the docs cannot disagree with the CLI.

Only the part between `BEGIN` and `END` is generated; the prose around it is hand-written. The
Helm column maps each option to the chart value that sets its environment variable, with the
default read from the chart's values.yaml (tests/integration/install/test_helm.py checks the
mapping against the rendered chart).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from experiment_operator.cli import parsers
from experiment_operator.manifests import install

DOC = Path("docs/configuration.md")
VALUES = Path("charts/experiment-operator/values.yaml")
BEGIN = (
    "<!-- Generated from `experiment-operator run`'s parser by `make manifests`"
    " (python -m experiment_operator.manifests write); do not edit up to the end marker. -->"
)
END = "<!-- End of the generated options. -->"

HELM_VALUES: dict[str, str] = {
    "--ingress-controller": "ingressController",
    "--traefik-group": "traefikGroup",
    "--nginx-ingress-class": "nginxIngressClass",
    "--gateway-name": "gateway.name",
    "--gateway-namespace": "gateway.namespace",
    "--gateway-section-name": "gateway.sectionName",
    "--gateway-https-port": "gateway.httpsPort",
    "--gateway-listener-sets": "gateway.listenerSets",
    "--mlflow-image": "mlflowImage",
    "--namespace": "watchNamespaces",
    "--max-concurrent-reconciles": "maxConcurrentReconciles",
    "--leader-elect": "leaderElection.enabled",
    "--leader-election-id": "leaderElection.id",
    "--metrics-bind-address": "metrics.port",
    "--health-probe-bind-address": "healthProbePort",
    "--log-format": "logFormat",
    "--log-level": "logLevel",
    "--resync-period": "resyncPeriod",
}
"""The chart value behind each option; the options not here the chart does not expose."""
CHART_FIXED = {
    "--leader-election-namespace": "the release namespace (from the Pod)",
    "--leader-election-identity": "the Pod's name",
    "--pod-uid": "the Pod's UID",
}
"""Options the chart sets without a value."""

_HELP = re.compile(
    r"^(?P<what>.+) \(default: (?P<default>[^()]+)\) \[env (?P<env>[A-Z_]+)(?P<hint>[^\]]*)\]$",
    re.S,
)


@dataclass(frozen=True)
class DocumentedOption:
    """One `run` option as `--help` describes it."""

    flags: tuple[str, ...]
    metavar: str | None
    what: str
    default: str
    env: str
    env_hint: str
    """What follows the variable's name in the help (`=true|false`, `, comma-separated`)."""


def documented_options() -> list[DocumentedOption]:
    """Every option of `experiment-operator run`, parsed from its help line (see
    `cli.options.option_help`); an option whose help lacks its default or variable fails here."""
    _, run = parsers()
    out = []
    for action in run._actions:
        if action.dest == "help":
            continue
        match = _HELP.match(" ".join((action.help or "").split()))
        if match is None:
            raise ValueError(f"{action.option_strings}: help does not end (default: ..) [env ..]")
        out.append(
            DocumentedOption(
                flags=tuple(action.option_strings),
                metavar=action.metavar if isinstance(action.metavar, str) else None,
                what=match["what"],
                default=match["default"],
                env=match["env"],
                env_hint=match["hint"],
            )
        )
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def _lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node[key]
    return node


def _helm_cell(flag: str, values: dict[str, Any]) -> str:
    if flag in CHART_FIXED:
        return CHART_FIXED[flag]
    if flag not in HELM_VALUES:
        return "—"
    default = yaml.safe_dump(_lookup(values, HELM_VALUES[flag]), default_flow_style=True)
    return f"{_code(HELM_VALUES[flag])} ({_code(default.strip().removesuffix('...').strip())})"


def _kustomize_line() -> str:
    """What config/manager passes, from the same objects config/manager is written from."""
    container = install.deployment()["spec"]["template"]["spec"]["containers"][0]
    env = [
        f"`{e['name']}` from the Pod's `{e['valueFrom']['fieldRef']['fieldPath']}`"
        if "valueFrom" in e
        else f"`{e['name']}={e['value']}`"
        for e in container.get("env", [])
    ]
    line = (
        f"kustomize's `config/manager` runs `experiment-operator run {' '.join(container['args'])}`"
    )
    return line + (f" with {', '.join(env)}." if env else ".")


def options_table(values: dict[str, Any]) -> str:
    """The generated part: the table of every option, and what kustomize's install passes."""
    flags = {f for o in documented_options() for f in o.flags}
    unknown = (HELM_VALUES.keys() | CHART_FIXED.keys()) - flags
    if unknown:
        raise ValueError(f"the Helm mapping names options the CLI does not have: {unknown}")
    rows = [
        "| Flag | Environment variable | Default | Helm value (chart default) | What it does |",
        "| --- | --- | --- | --- | --- |",
    ]
    for o in documented_options():
        flag = " / ".join(_code(f"{f} {o.metavar}" if o.metavar else f) for f in o.flags)
        default = _code(o.default) if " " not in o.default else o.default
        env = _code(o.env + o.env_hint) if o.env_hint.startswith("=") else _code(o.env) + o.env_hint
        helm = _helm_cell(o.flags[0], values)
        rows.append(f"| {flag} | {env} | {default} | {helm} | {_cell(o.what)} |")
    return "\n".join(rows) + "\n\n" + _kustomize_line()


def render_configuration(root: Path) -> str:
    """docs/configuration.md under `root` with its generated part brought up to date."""
    current = (root / DOC).read_text()
    before, begin, rest = current.partition(BEGIN)
    _, end, after = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{DOC} lost its markers {BEGIN!r} … {END!r}")
    values = yaml.safe_load((root / VALUES).read_text())
    return f"{before}{BEGIN}\n{options_table(values)}\n{END}{after}"
