{{/* The chart's name. */}}
{{- define "spindle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, at most 63 characters. */}}
{{- define "spindle.fullname" -}}
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

{{- define "spindle.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spindle.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spindle.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spindle.labels" -}}
helm.sh/chart: {{ include "spindle.chart" . }}
{{ include "spindle.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "spindle.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spindle.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spindle.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the tokens file: the user's or the chart's. */}}
{{- define "spindle.authSecretName" -}}
{{- default (printf "%s-auth" (include "spindle.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "spindle.authSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}tokens{{ end }}
{{- end }}

{{/* Where spindlectl (probes, test pod) finds the server's name in its certificate. */}}
{{- define "spindle.tlsServerName" -}}
{{- default (include "spindle.fullname" .) .Values.tls.serverName }}
{{- end }}

{{/* spindlectl's TLS flags, one YAML list item per line, for probes and the test pod. */}}
{{- define "spindle.spindlectlTlsArgs" -}}
{{- if .Values.tls.enabled }}
- --tls-ca=/etc/spindle/tls/ca.crt
- --tls-server-name={{ include "spindle.tlsServerName" . }}
{{- if .Values.tls.mutual }}
- --tls-cert=/etc/spindle/tls/tls.crt
- --tls-key=/etc/spindle/tls/tls.key
{{- end }}
{{- end }}
{{- end }}

{{/* Checks of value combinations the schema cannot express. */}}
{{- define "spindle.validate" -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) }}
{{- fail "tls.enabled needs tls.existingSecret: a Secret with tls.crt, tls.key and ca.crt" }}
{{- end }}
{{- if and .Values.tls.mutual (not .Values.tls.enabled) }}
{{- fail "tls.mutual needs tls.enabled" }}
{{- end }}
{{- if and .Values.auth.metricsRequireToken (not .Values.auth.enabled) }}
{{- fail "auth.metricsRequireToken needs auth.enabled" }}
{{- end }}
{{- if and (not .Values.auth.enabled) (not .Values.tls.enabled) (not .Values.config.insecure) }}
{{- fail "spindled refuses to listen on the pod's address with neither auth nor TLS: enable auth or tls, or set config.insecure=true for a trusted network" }}
{{- end }}
{{- end }}
