{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "recprep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already holds the chart's. */}}
{{- define "recprep.fullname" -}}
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

{{/* Standard labels. */}}
{{- define "recprep.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "recprep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator pod (never change them: Deployment selectors are immutable). */}}
{{- define "recprep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recprep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
recprep.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "recprep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recprep.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Render-time checks: fail early with a message instead of deploying something broken. */}}
{{- define "recprep.validate" -}}
{{- if not .Values.image.tag }}
{{- fail "image.tag must not be empty: pin the recprep image you deploy" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.name is required when serviceAccount.create is false" }}
{{- end }}
{{- if and (not .Values.rbac.create) (not .Values.serviceAccount.name) }}
{{- fail "rbac.create is false: set serviceAccount.name to an account that already has the operator's permissions" }}
{{- end }}
{{- end }}
