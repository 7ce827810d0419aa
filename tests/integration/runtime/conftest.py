"""A tiny test CRD (Widget, with a status subresource) for runtime tests of generic resources."""

from __future__ import annotations

import pytest

from experiment_lab.cluster import Kubectl

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.runtime.test.example
spec:
  group: runtime.test.example
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""


@pytest.fixture(scope="session")
def widget_crd(kubectl: Kubectl) -> str:
    """Install the Widget CRD once and wait until it is established."""
    kubectl("apply", "--server-side", "-f", "-", input=WIDGET_CRD)
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.runtime.test.example"
    )
    return "widgets.runtime.test.example"
