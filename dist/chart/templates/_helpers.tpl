{{/* The chart's name, or nameOverride. */}}
{{- define "snowauth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: fullnameOverride, else the release name
when it already contains the chart's name, else "<release>-<chart>". A
release named "snowauth" gets the same object names as dist/install.yaml.
*/}}
{{- define "snowauth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "snowauth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "snowauth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: snowauth
{{- end }}

{{/* Labels that select the manager's Pods; they never change on upgrade. */}}
{{- define "snowauth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "snowauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
control-plane: controller-manager
{{- end }}

{{/* The manager's ServiceAccount. */}}
{{- define "snowauth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controller-manager" (include "snowauth.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The manager image, by digest when one is given. */}}
{{- define "snowauth.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Whether the manager elects a leader: always with more than one replica (two
managers must never refresh the same token at once), and by default with one
too, so a rolling update hands over cleanly.
*/}}
{{- define "snowauth.leaderElection" -}}
{{- if gt (int .Values.replicaCount) 1 }}
{{- if not .Values.leaderElection.enable }}
{{- fail "leaderElection.enable=false needs replicaCount: 1: with more replicas, every one of them would refresh the same tokens" }}
{{- end }}
{{- true }}
{{- else if .Values.leaderElection.enable }}
{{- true }}
{{- end }}
{{- end }}

{{/* The CA bundle's volume source, or nothing. */}}
{{- define "snowauth.caBundleVolume" -}}
{{- $ca := .Values.manager.caBundle }}
{{- if and $ca.configMap.name $ca.secret.name }}
{{- fail "manager.caBundle: set configMap.name or secret.name, not both" }}
{{- end }}
{{- if $ca.configMap.name }}
configMap:
  name: {{ $ca.configMap.name }}
  items:
  - key: {{ $ca.configMap.key }}
    path: ca-bundle.pem
{{- else if $ca.secret.name }}
secret:
  secretName: {{ $ca.secret.name }}
  items:
  - key: {{ $ca.secret.key }}
    path: ca-bundle.pem
{{- end }}
{{- end }}

{{/* Labels that select the authorization server's Pods. */}}
{{- define "snowauth.authorizationSelectorLabels" -}}
app.kubernetes.io/name: {{ include "snowauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: authorization-server
{{- end }}

{{/* The authorization server's ServiceAccount. */}}
{{- define "snowauth.authorizationServiceAccountName" -}}
{{ include "snowauth.fullname" . }}-authorization
{{- end }}
