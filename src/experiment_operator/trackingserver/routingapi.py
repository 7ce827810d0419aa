"""Which routing API a reconcile pass uses, from the operator's mode and what the cluster serves.

`--ingress-controller=auto` (the default) takes the first API served, in this order: Traefik v3's
IngressRoute (`traefik.io`), the legacy `traefik.containo.us` (only the `--traefik-group` when
named), Gateway API's HTTPRoute. An explicit mode takes its API, or reports it not served.
Whatever is not served is asked again (discovery, at most once per interval for the whole
operator), and a pass that had to do without a preferred API comes back later by itself: a CRD
installed while the operator runs is watched and used without a restart.
"""

from __future__ import annotations

from dataclasses import replace

from lightkube.core import resource as lkr

from experiment_operator.runtime.manager import Manager
from experiment_operator.trackingserver.children import (
    ChildOptions,
    IngressController,
)
from experiment_operator.trackingserver.passes import Pass
from experiment_operator.trackingserver.resources import (
    INGRESS_ROUTES,
    MIDDLEWARES,
    HTTPRoute,
    ListenerSet,
)
from experiment_operator.trackingserver.status import NO_ROUTING_API, ConditionValue

NOT_SERVED_RECHECK_FACTOR = 10
"""A missing routing API is rechecked at 10x the reconciler's recheck interval per CR."""

NO_ROUTING_API_MESSAGE = (
    "no routing API is served: install Traefik's CRDs (IngressRoute of traefik.io or "
    "traefik.containo.us) or Gateway API's (HTTPRoute of gateway.networking.k8s.io/v1), or "
    "choose --ingress-controller (nginx or none)"
)


class RoutingChooser:
    """Resolves the operator's routing mode for each pass (see the module docstring)."""

    def __init__(self, manager: Manager, options: ChildOptions, *, interval: float) -> None:
        self.manager = manager
        self.options = options
        self.interval = interval
        """Least time between two discoveries of one unserved kind."""

    async def _served(self, *kinds: type[lkr.Resource]) -> bool:
        for kind in kinds:
            if not await self.manager.rediscover(kind, self.interval):
                return False
        return True

    async def _traefik_group(self) -> str | None:
        for group in self.options.traefik_groups:
            if await self._served(INGRESS_ROUTES[group], MIDDLEWARES[group]):
                return group
        return None

    def _recheck(self, p: Pass) -> None:
        """A preferred API is not served (yet): look again later even if nothing else changes."""
        p.requeue_after.append(NOT_SERVED_RECHECK_FACTOR * self.interval)

    async def options_for(self, p: Pass) -> ChildOptions:
        """The options of this pass, with the mode and Traefik group resolved; a routing API
        that is missing is reported on `p` (Ready=False) and rechecked later."""
        mode, options = self.options.ingress_controller, self.options
        if mode in (IngressController.AUTO, IngressController.TRAEFIK):
            group = await self._traefik_group()
            if group != self.options.traefik_groups[0]:
                self._recheck(p)
            if group is not None:
                return replace(
                    options, ingress_controller=IngressController.TRAEFIK, traefik_group=group
                )
            if mode is IngressController.TRAEFIK:  # its objects are then reported not served
                return replace(options, traefik_group=options.traefik_groups[0])
            mode = IngressController.GATEWAY if await self._served(HTTPRoute) else mode
        if mode is IngressController.GATEWAY:
            await self._served(HTTPRoute)  # reported by the reconciler when still missing
            listener_sets = options.listener_sets_enabled and await self._served(ListenerSet)
            if not listener_sets and p.ts.spec.tls_enabled:  # cert/key unused until it is
                self._recheck(p)
            return replace(options, ingress_controller=mode, listener_sets=listener_sets)
        if mode is IngressController.AUTO:
            p.problems.append(ConditionValue("False", NO_ROUTING_API, NO_ROUTING_API_MESSAGE))
            p.routing_failed = True
        return options
