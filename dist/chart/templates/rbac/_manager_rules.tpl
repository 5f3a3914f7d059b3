{{/* Generated from config/rbac/role.yaml by hack/gen-chart.sh. DO NOT EDIT. */}}
{{/* The manager's RBAC rules, from the +kubebuilder:rbac markers. */}}
{{- define "snowauth.managerRules" -}}
- apiGroups:
  - ""
  resources:
  - secrets
  verbs:
  - create
  - get
  - list
  - patch
  - update
  - watch
- apiGroups:
  - events.k8s.io
  resources:
  - events
  verbs:
  - create
  - patch
- apiGroups:
  - servicenow.snowauth.dev
  resources:
  - servicenowconnections
  verbs:
  - get
  - list
  - patch
  - watch
- apiGroups:
  - servicenow.snowauth.dev
  resources:
  - servicenowconnections/finalizers
  verbs:
  - update
- apiGroups:
  - servicenow.snowauth.dev
  resources:
  - servicenowconnections/status
  verbs:
  - get
  - patch
  - update
{{- end }}
