{{/* Chart name, at most 63 characters. */}}
{{- define "mailfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name, at most 63 characters (object names get a suffix of their own). */}}
{{- define "mailfleet.fullname" -}}
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

{{/* fullname-<suffix>, the whole at most 63 characters. Call with (list $ "worker"). */}}
{{- define "mailfleet.componentName" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $max := sub 62 (len $suffix) | int }}
{{- printf "%s-%s" (include "mailfleet.fullname" $ctx | trunc $max | trimSuffix "-") $suffix }}
{{- end }}

{{- define "mailfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mailfleet.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The recommended labels. Call with (dict "ctx" $ "component" "worker").
*/}}
{{- define "mailfleet.labels" -}}
helm.sh/chart: {{ include "mailfleet.chart" .ctx }}
{{ include "mailfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ include "mailfleet.imageTag" .ctx | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: mailfleet
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select one component's pods (never change them: selectors are immutable). */}}
{{- define "mailfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailfleet.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The Secret holding MAILFLEET_SECRET_KEY, MAILFLEET_API_TOKEN, DATABASE_URL, AMQP_URL. */}}
{{- define "mailfleet.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- include "mailfleet.fullname" . }}
{{- end }}
{{- end }}

{{- define "mailfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mailfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mailfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "mailfleet.imageTag" .) }}
{{- end }}

{{/*
env entries reading secret settings from the Secret. Call with (dict "ctx" $ "keys" (list ...)).
*/}}
{{- define "mailfleet.secretEnv" -}}
{{- $secret := include "mailfleet.secretName" .ctx }}
{{- range .keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- end }}

{{/* Extra env entries from a name: value map. */}}
{{- define "mailfleet.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
Checks of the values that the templates rely on; rendered (as nothing) by the ConfigMap.
*/}}
{{- define "mailfleet.validate" -}}
{{- $reserved := list "MAILFLEET_QUEUE_PREFIX" "MAILFLEET_API_ADDR" "MAILFLEET_HEALTH_ADDR" "MAILFLEET_SECRET_KEY" "MAILFLEET_API_TOKEN" "DATABASE_URL" "AMQP_URL" "OTEL_EXPORTER_OTLP_ENDPOINT" }}
{{- range $reserved }}
{{- if hasKey $.Values.config . }}
{{- fail (printf "config.%s: set by the chart (queuePrefix, existingSecret/secret, otel.endpoint, ports), not in config" .) }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[A-Za-z0-9_.-]+$" .Values.queuePrefix) }}
{{- fail "queuePrefix: letters, digits, '_', '.', '-' only" }}
{{- end }}
{{- if le (int .Values.worker.terminationGracePeriodSeconds) 25 }}
{{- fail "worker.terminationGracePeriodSeconds must be above 25: a worker drains for up to 25 s after SIGTERM" }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the Deployments and the Job. */}}
{{- define "mailfleet.podCommon" -}}
serviceAccountName: {{ include "mailfleet.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
