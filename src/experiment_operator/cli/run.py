"""`experiment-operator run`: the manager with the TrackingServer controller, until a signal."""

from __future__ import annotations

import logging

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig

from experiment_operator.cli.options import AUTO_GROUP, RunOptions
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import FIELD_MANAGER
from experiment_operator.runtime.manager import KindNotServedError, LeadershipLost, Manager
from experiment_operator.runtime.metrics import ProbeServer
from experiment_operator.trackingserver.controller import OWNED_LABELS, child_options, setup
from experiment_operator.trackingserver.gateway import ParentGateway

log = logging.getLogger("experiment_operator")


async def run(options: RunOptions) -> int:
    """Run the manager until a signal; 1 when leadership is lost (let the Pod restart)."""
    try:
        config = (
            KubeConfig.from_file(options.kubeconfig)
            if options.kubeconfig
            else KubeConfig.from_env()
        )
        client = AsyncClient(
            config=config, field_manager=FIELD_MANAGER, timeout=kubeapi.REQUEST_TIMEOUT
        )  # reads CA, client certs
        kubeapi.prepare_connections(client)
    except (ConfigError, OSError) as err:
        log.error("no usable kubeconfig: %s", err)
        return 1
    metrics_server: ProbeServer | None = None
    try:
        try:
            child = await child_options(
                client,
                options.ingress_controller,
                options.nginx_ingress_class,
                options.mlflow_image,
                gateway=(
                    ParentGateway(
                        options.gateway_name,
                        options.gateway_namespace,
                        options.gateway_section_name,
                    )
                    if options.gateway_name
                    else None
                ),
                gateway_https_port=options.gateway_https_port,
                gateway_listener_sets=options.gateway_listener_sets,
                traefik_group=None
                if options.traefik_group == AUTO_GROUP
                else options.traefik_group,
            )
        except (httpx2.HTTPError, ApiError) as err:
            log.error("cannot reach the API server: %s", err)
            return 1
        manager = Manager(
            client,
            namespaces=options.namespaces,
            owned_label_selector=OWNED_LABELS,
            leader_election=options.leader_elect,
            leader_election_namespace=options.leader_election_namespace,
            leader_election_id=options.leader_election_id,
            identity=options.leader_election_identity,
            instance=options.pod_uid or "",
            lease_timings=(
                options.leader_election_lease_duration,
                options.leader_election_renew_deadline,
                options.leader_election_retry_period,
            ),
            probe_address=options.health_probe_bind_address,
            resync_period=options.resync_period,
            handle_signals=True,
        )
        setup(manager, child, max_concurrent_reconciles=options.max_concurrent_reconciles)
        metrics = options.metrics_bind_address
        if metrics is not None and metrics != options.health_probe_bind_address:
            metrics_server = ProbeServer(*metrics, ready=lambda: manager.ready)
            await metrics_server.start()
        log.info(
            "starting",
            extra={
                "ingressController": child.ingress_controller.value,
                "traefikGroup": child.traefik_group,
                "gateway": child.gateway.parent_ref() if child.gateway else None,
                "mlflowImage": child.mlflow_image,
                "namespaces": ",".join(options.namespaces or []) or "*",
                "leaderElection": options.leader_elect,
            },
        )
        await manager.run()
    except LeadershipLost as err:
        log.error("%s: exiting so that a fresh process campaigns again", err)
        return 1
    except (OSError, KindNotServedError) as err:  # e.g. a bind address in use, no CRD
        log.error("%s", err)
        return 1
    finally:
        if metrics_server is not None:
            await metrics_server.stop()
        await client.close()
    return 0
