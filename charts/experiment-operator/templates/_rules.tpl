{{/* Generated from src/experiment_operator/rbac.py by `make manifests`; do not edit. */}}
{{- define "experiment-operator.rules" -}}
- apiGroups:
  - ''
  resources:
  - events
  verbs:
  - create
  - patch
- apiGroups:
  - ''
  resources:
  - persistentvolumeclaims
  - secrets
  - services
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - delete
- apiGroups:
  - apps
  resources:
  - deployments
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - delete
- apiGroups:
  - ''
  resources:
  - pods
  verbs:
  - get
  - list
  - watch
- apiGroups:
  - experiment.aiscope
  resources:
  - trackingservers
  verbs:
  - get
  - list
  - watch
  - patch
- apiGroups:
  - experiment.aiscope
  resources:
  - trackingservers/finalizers
  verbs:
  - update
- apiGroups:
  - experiment.aiscope
  resources:
  - trackingservers/status
  verbs:
  - patch
- apiGroups:
  - networking.k8s.io
  resources:
  - ingresses
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - delete
- apiGroups:
  - traefik.io
  resources:
  - ingressroutes
  - middlewares
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - delete
- apiGroups:
  - traefik.containo.us
  resources:
  - ingressroutes
  - middlewares
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - delete
- apiGroups:
  - gateway.networking.k8s.io
  resources:
  - httproutes
  - listenersets
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - delete
{{- end }}
{{- define "experiment-operator.leaderElectionRules" -}}
- apiGroups:
  - coordination.k8s.io
  resources:
  - leases
  verbs:
  - get
  - create
  - update
{{- end }}
{{- define "experiment-operator.leaderElectionVerbs" -}}
["get", "create", "update"]
{{- end }}
{{- define "experiment-operator.leaderElectionFlowPrecedence" -}}
200
{{- end }}
