"""`experiment-operator` option parsing (flags, environment variables, errors), render and
manifests, without a cluster."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from experiment_operator import cli
from experiment_operator.cli.run import run
from experiment_operator.trackingserver.children import IngressController

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def options(
    argv: list[str], env: dict[str, str] | None = None, ns_file: Path | None = None
) -> cli.RunOptions:
    top, run = cli.parsers()
    args = top.parse_args(["run", *argv])
    return cli.run_options(run, args, env or {}, ns_file or Path("/nonexistent"))


def test_defaults() -> None:
    opts = options([])
    assert opts == cli.RunOptions(
        ingress_controller=IngressController.AUTO,
        traefik_group="auto",
        nginx_ingress_class="nginx",
        gateway_name=None,
        gateway_namespace=None,
        gateway_section_name=None,
        gateway_https_port=443,
        gateway_listener_sets=True,
        mlflow_image="ghcr.io/mlflow/mlflow:v3.17.2-full",
        namespaces=None,
        max_concurrent_reconciles=16,
        leader_elect=True,
        leader_election_namespace="default",
        leader_election_id="experiment-operator",
        leader_election_identity=None,
        pod_uid=None,
        leader_election_lease_duration=15.0,
        leader_election_renew_deadline=10.0,
        leader_election_retry_period=2.0,
        metrics_bind_address=("0.0.0.0", 8080),
        health_probe_bind_address=("0.0.0.0", 8081),
        log_format="text",
        log_level="info",
        resync_period=36000.0,
        kubeconfig=None,
    )


def test_flags() -> None:
    opts = options(
        [
            "--ingress-controller=nginx",
            "--nginx-ingress-class",
            "internal",
            "--namespace=team-a,team-b",
            "--namespace",
            "team-c",
            "--max-concurrent-reconciles=8",
            "--no-leader-elect",
            "--leader-election-namespace=ops",
            "--leader-election-id=eo",
            "--metrics-bind-address=127.0.0.1:9090",
            "--health-probe-bind-address=0",
            "--log-format=json",
            "--log-level=DEBUG",
            "--resync-period=1h30m",
            "--kubeconfig=/tmp/kc",
            "--gateway-name=public",
            "--gateway-namespace=gateway-system",
            "--gateway-section-name=websecure",
            "--gateway-https-port=8443",
            "--gateway-listener-sets=false",
            "--traefik-group=traefik.containo.us",
            "--leader-election-lease-duration=4s",
            "--leader-election-renew-deadline=3",
            "--leader-election-retry-period=500ms",
        ]
    )
    assert (
        opts.leader_election_lease_duration,
        opts.leader_election_renew_deadline,
        opts.leader_election_retry_period,
    ) == (4.0, 3.0, 0.5)
    assert opts.ingress_controller is IngressController.NGINX
    assert opts.nginx_ingress_class == "internal"
    assert opts.namespaces == ["team-a", "team-b", "team-c"]
    assert opts.max_concurrent_reconciles == 8
    assert opts.leader_elect is False
    assert (opts.leader_election_namespace, opts.leader_election_id) == ("ops", "eo")
    assert opts.metrics_bind_address == ("127.0.0.1", 9090)
    assert opts.health_probe_bind_address is None
    assert (opts.log_format, opts.log_level) == ("json", "debug")
    assert opts.resync_period == 5400.0
    assert opts.kubeconfig == "/tmp/kc"
    assert (opts.gateway_name, opts.gateway_namespace, opts.gateway_section_name) == (
        "public",
        "gateway-system",
        "websecure",
    )
    assert opts.gateway_https_port == 8443
    assert opts.gateway_listener_sets is False
    assert opts.traefik_group == "traefik.containo.us"


def test_environment_as_the_chart_sets_it() -> None:
    env = {
        "EXPERIMENT_OPERATOR_INGRESS_CONTROLLER": "none",
        "EXPERIMENT_OPERATOR_TRAEFIK_GROUP": "traefik.io",
        "EXPERIMENT_OPERATOR_NGINX_INGRESS_CLASS": "nginx",
        "EXPERIMENT_OPERATOR_NAMESPACE": "a,b",
        "EXPERIMENT_OPERATOR_MAX_CONCURRENT_RECONCILES": "2",
        "EXPERIMENT_OPERATOR_LEADER_ELECT": "false",
        "EXPERIMENT_OPERATOR_LEADER_ELECTION_NAMESPACE": "experiment-operator-system",
        "EXPERIMENT_OPERATOR_LEADER_ELECTION_IDENTITY": "experiment-operator-7d9f-x2k4p",
        "EXPERIMENT_OPERATOR_POD_UID": "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c6d",
        "EXPERIMENT_OPERATOR_METRICS_BIND_ADDRESS": ":8080",
        "EXPERIMENT_OPERATOR_HEALTH_PROBE_BIND_ADDRESS": ":8081",
        "EXPERIMENT_OPERATOR_LOG_FORMAT": "json",
        "EXPERIMENT_OPERATOR_LOG_LEVEL": "info",
        "EXPERIMENT_OPERATOR_RESYNC_PERIOD": "10h",
    }
    opts = options([], env)
    assert opts.ingress_controller is IngressController.NONE
    assert opts.traefik_group == "traefik.io"
    assert opts.namespaces == ["a", "b"]
    assert opts.max_concurrent_reconciles == 2
    assert opts.leader_elect is False
    assert opts.leader_election_namespace == "experiment-operator-system"
    assert opts.leader_election_identity == "experiment-operator-7d9f-x2k4p"
    assert opts.pod_uid == "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c6d"
    assert opts.log_format == "json"
    assert opts.resync_period == 36000.0


def test_flags_win_over_the_environment() -> None:
    env = {"EXPERIMENT_OPERATOR_LEADER_ELECT": "false", "EXPERIMENT_OPERATOR_NAMESPACE": "a"}
    opts = options(["--leader-elect", "--namespace=b"], env)
    assert opts.leader_elect is True
    assert opts.namespaces == ["b"]


def test_leader_election_namespace_defaults_to_the_pods(tmp_path: Path) -> None:
    ns_file = tmp_path / "namespace"
    ns_file.write_text("operators\n")
    assert options([], ns_file=ns_file).leader_election_namespace == "operators"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--ingress-controller=istio"], {}, "choose from auto, traefik, nginx, gateway, none"),
        (["--max-concurrent-reconciles=0"], {}, "must be at least 1"),
        (["--metrics-bind-address=8080"], {}, "is not [HOST]:PORT"),
        (["--resync-period=soon"], {}, "is not a duration"),
        (["--namespace=Team_A"], {}, "namespace list"),
        ([], {"EXPERIMENT_OPERATOR_LEADER_ELECT": "maybe"}, "EXPERIMENT_OPERATOR_LEADER_ELECT"),
        ([], {"EXPERIMENT_OPERATOR_LOG_LEVEL": "loud"}, "EXPERIMENT_OPERATOR_LOG_LEVEL='loud'"),
        ([], {"EXPERIMENT_OPERATOR_RESYNC_PERIOD": "-5"}, "must be positive"),
        (["--leader-election-renew-deadline=20s"], {}, "lease duration (15s) > renew deadline"),
        (["--leader-election-retry-period=10s"], {}, "renew deadline (10s) > retry period"),
    ],
)
def test_bad_options_exit_with_a_clear_message(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        options(argv, env)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


async def test_an_unreadable_ca_file_is_a_clear_exit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump({
            "clusters": [{"name": "c", "cluster": {
                "server": "https://127.0.0.1:1", "certificate-authority": str(tmp_path / "no-ca"),
            }}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        })
    )  # fmt: skip
    assert await run(options([f"--kubeconfig={kubeconfig}"])) == 1
    assert "no usable kubeconfig" in caplog.text


def test_run_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    words = set(out.split())
    for option in cli.RUN_OPTIONS:
        assert option.flag in out
        assert f"{option.env}]" in words
    assert "--namespace" in out
    assert "--no-leader-elect" in out


def test_render_prints_the_children(capsys: pytest.CaptureFixture[str]) -> None:
    sample = str(FIXTURES / "seed-blog-sample.yaml")
    assert cli.main(["render", "-f", sample, "--ingress-controller=nginx"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = sorted(d["kind"] for d in docs)
    # The seed's image starts MLflow itself: stripped routing, three Ingresses.
    assert kinds == ["Deployment", "Ingress", "Ingress", "Ingress", "Secret", "Secret", "Service"]
    assert "mlflow1234" not in yaml.safe_dump_all(docs)
    assert cli.main(["render", "-f", sample, "--show-secrets"]) == 0
    assert base64.b64encode(b"mlflow1234").decode() in capsys.readouterr().out


def test_render_with_a_users_tls_secret(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cr = yaml.safe_load((FIXTURES / "seed-blog-sample.yaml").read_text())
    cr["spec"].update(cert="", key="")
    file = tmp_path / "cr.yaml"
    file.write_text(yaml.safe_dump(cr))
    assert cli.main(["render", "-f", str(file), "--traefik-group=traefik.containo.us"]) == 0
    route = next(
        d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "IngressRoute"
    )
    assert route["apiVersion"] == "traefik.containo.us/v1alpha1"
    assert "tls" not in route["spec"]
    assert cli.main(["render", "-f", str(file), "--tls-secret-present"]) == 0
    route = next(
        d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "IngressRoute"
    )
    assert route["spec"]["tls"] == {"secretName": "trackingserver"}


def test_render_without_a_trackingserver_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "empty.yaml"
    file.write_text("kind: ConfigMap\n")
    assert cli.main(["render", "-f", str(file)]) == 1
    assert "no TrackingServer" in capsys.readouterr().err


def test_manifests_prints_the_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["manifests", "--image", "registry.example/eo:1"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "ClusterRole", "Deployment"} <= kinds
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/eo:1"
    )
