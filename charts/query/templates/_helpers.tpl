{{/*
Helpers of the `query` chart. Every name is prefixed with the chart name: Helm shares one
template namespace between an umbrella chart and its subcharts.
*/}}

{{- define "query.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or fullnameOverride. */}}
{{- define "query.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "query.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "query.selectorLabels" -}}
app.kubernetes.io/name: {{ include "query.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: query
{{- end -}}

{{- define "query.labels" -}}
{{ include "query.selectorLabels" . }}
app.kubernetes.io/part-of: thanos-rs
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* registry/repository:tag or @digest; global.imageRegistry overrides image.registry. */}}
{{- define "query.image" -}}
{{- $registry := .Values.image.registry -}}
{{- if and .Values.global .Values.global.imageRegistry -}}{{- $registry = .Values.global.imageRegistry -}}{{- end -}}
{{- $repository := .Values.image.repository -}}
{{- if $registry -}}{{- $repository = printf "%s/%s" $registry $repository -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "query.imagePullSecrets" -}}
{{- $secrets := concat (.Values.image.pullSecrets | default list) ((.Values.global).imagePullSecrets | default list) | uniq -}}
{{- if $secrets -}}
imagePullSecrets:
{{- range $secrets }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "query.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "query.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The gRPC endpoints the querier fans out to, one `--endpoint` each. */}}
{{- define "query.endpoints" -}}
{{- $endpoints := list -}}
{{- range .Values.stores -}}
{{- $endpoints = append $endpoints (tpl . $) -}}
{{- end -}}
{{- if .Values.dnsDiscovery.enabled -}}
{{- if not .Values.dnsDiscovery.sidecarsService -}}
{{- fail "query.dnsDiscovery.enabled needs query.dnsDiscovery.sidecarsService (the headless Service of the Prometheus pods' sidecars)" -}}
{{- end -}}
{{- $namespace := .Values.dnsDiscovery.sidecarsNamespace | default .Release.Namespace -}}
{{- $host := printf "%s.%s.svc.%s" .Values.dnsDiscovery.sidecarsService $namespace .Values.clusterDomain -}}
{{- if .Values.dnsDiscovery.srv -}}
{{- $endpoints = append $endpoints (printf "dnssrv+_%s._tcp.%s" .Values.dnsDiscovery.portName $host) -}}
{{- else -}}
{{- $endpoints = append $endpoints (printf "dns+%s:%v" $host .Values.dnsDiscovery.port) -}}
{{- end -}}
{{- end -}}
{{- toJson $endpoints -}}
{{- end -}}
