{{/*
Names and labels shared by every template, so that each object carries the
same app.kubernetes.io/* labels and selectors never drift from them.
*/}}

{{- define "smallfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "smallfleet.fullname" -}}
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

{{- define "smallfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; never change them after a release. */}}
{{- define "smallfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smallfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "smallfleet.labels" -}}
helm.sh/chart: {{ include "smallfleet.chart" . }}
{{ include "smallfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: smallfleet
{{- end }}

{{- define "smallfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "smallfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "smallfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The namespaces the operator watches, as a JSON list: watchNamespace and
watchNamespaces together, without repeats; empty means every namespace.
Read it with: include "smallfleet.watchNamespaces" . | fromJsonArray
*/}}
{{- define "smallfleet.watchNamespaces" -}}
{{- $all := .Values.watchNamespaces | default list }}
{{- with .Values.watchNamespace }}{{ $all = prepend $all . }}{{ end }}
{{- toJson (uniq $all) }}
{{- end }}

{{/* Leader election through kopf peering is on only when several replicas run. */}}
{{- define "smallfleet.peering" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/*
The standard labels with another component than the operator's, for objects
that are not the operator (the CRDs, monitors, the dashboard):
include "smallfleet.componentLabels" (list . "monitoring").
*/}}
{{- define "smallfleet.componentLabels" -}}
{{- $root := index . 0 }}
{{- toYaml (merge (dict "app.kubernetes.io/component" (index . 1)) (include "smallfleet.labels" $root | fromYaml)) }}
{{- end }}
