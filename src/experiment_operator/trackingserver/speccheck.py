"""Checks of a TrackingServer's spec against objects the user owns: the TLS Secret (or cert and
key) and a referenced S3 credentials Secret. Their outcome is the TLS condition and Ready=False
reasons; a user's Secret is not in the label-selected caches, so while a problem lasts the pass
is requeued to look again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from lightkube.resources.core_v1 import Secret

from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import is_controlled_by
from experiment_operator.runtime.kubeapi import KindInfo, Obj
from experiment_operator.runtime.manager import Manager
from experiment_operator.trackingserver import status, tls
from experiment_operator.trackingserver.passes import Pass
from experiment_operator.trackingserver.secrets import credentials_source
from experiment_operator.trackingserver.status import ConditionValue

SECRET = KindInfo.of(Secret)


class SpecChecks:
    """The checks, with the reconciler's clock and recheck interval."""

    def __init__(
        self, manager: Manager, *, clock: Callable[[], datetime], recheck_interval: float
    ) -> None:
        self.manager = manager
        self.clock = clock
        self.recheck_interval = recheck_interval

    async def tls(self, p: Pass) -> tuple[ConditionValue, bool, bool]:
        """The TLS condition, whether a Secret `<name>` will exist for routing, and whether an
        existing one must be kept as is (the spec's cert/key are invalid)."""
        spec = p.ts.spec
        if spec.tls_enabled:
            check = tls.check_tls_pair(spec.cert, spec.key.get_secret_value(), now=self.clock())
            if check.reason == tls.VALID:
                return ConditionValue("True", "Valid", check.message), True, False
            if check.expired:
                message = f"{check.message}; it is still served"
                return ConditionValue("False", check.reason, message), True, False
            p.problems.append(ConditionValue("False", check.reason, check.message))
            existing = await self.read_secret(p, p.name)
            return ConditionValue("False", check.reason, check.message), existing is not None, True
        existing = await self.read_secret(p, p.name)
        if existing is not None and not is_controlled_by(existing, p.uid):
            return (
                ConditionValue("True", "UserSecret", f"serving the Secret {p.name}"),
                True,
                False,
            )
        if spec.url.startswith("https:"):
            p.requeue_after.append(self.recheck_interval)
            message = (
                f"url is https but there is no cert/key and no Secret {p.name}: served without "
                "TLS until one exists"
            )
            return ConditionValue("False", status.TLS_SECRET_NOT_FOUND, message), False, False
        return ConditionValue("True", "NotRequested", "url is http"), False, False

    async def read_secret(self, p: Pass, name: str) -> Obj | None:
        """A Secret from our cache, else from the server (a user's Secret is not cached)."""
        cached = self.manager.cache(Secret).get(p.namespace, name)
        if cached is not None:
            return cached
        return await kubeapi.get(self.manager.client, SECRET, p.namespace, name)

    async def credentials(self, p: Pass) -> None:
        source = credentials_source(p.ts)
        if source is None or source.owned:
            return
        secret = await self.read_secret(p, source.secret_name)
        if secret is None:
            p.problems.append(
                ConditionValue(
                    "False",
                    status.CREDENTIALS_SECRET_NOT_FOUND,
                    f"the Secret {source.secret_name} named by s3CredentialsSecretRef does not "
                    "exist",
                )
            )
            p.requeue_after.append(self.recheck_interval)
            return
        missing = status.missing_credentials_keys(source, secret)
        if missing is not None:
            p.problems.append(missing)
            p.requeue_after.append(self.recheck_interval)
