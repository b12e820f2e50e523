{{/*
Helpers of the `compactor` chart. Every name is prefixed with the chart name: Helm shares one
template namespace between an umbrella chart and its subcharts.
*/}}

{{- define "compactor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or fullnameOverride. */}}
{{- define "compactor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "compactor.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "compactor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "compactor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: compactor
{{- end -}}

{{- define "compactor.labels" -}}
{{ include "compactor.selectorLabels" . }}
app.kubernetes.io/part-of: thanos-rs
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* registry/repository:tag or @digest; global.imageRegistry overrides image.registry. */}}
{{- define "compactor.image" -}}
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

{{- define "compactor.imagePullSecrets" -}}
{{- $secrets := concat (.Values.image.pullSecrets | default list) ((.Values.global).imagePullSecrets | default list) | uniq -}}
{{- if $secrets -}}
imagePullSecrets:
{{- range $secrets }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "compactor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "compactor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The objstore Secret: existingObjstoreSecret (own or global), else the one this chart renders. */}}
{{- define "compactor.objstoreSecretName" -}}
{{- $existing := .Values.existingObjstoreSecret | default (.Values.global).existingObjstoreSecret -}}
{{- if $existing -}}
{{- $existing -}}
{{- else -}}
{{- printf "%s-objstore-secret" (include "compactor.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* objstore.yml as text: objstoreConfig (own or global), a YAML string or a map. */}}
{{- define "compactor.objstoreConfig" -}}
{{- $config := .Values.objstoreConfig | default (.Values.global).objstoreConfig -}}
{{- if kindIs "string" $config -}}
{{- tpl $config . -}}
{{- else if $config -}}
{{- toYaml $config -}}
{{- end -}}
{{- end -}}

{{/* The data dir's PVC: persistence.existingClaim, else the one this chart renders. */}}
{{- define "compactor.pvcName" -}}
{{- .Values.persistence.existingClaim | default (include "compactor.fullname" .) -}}
{{- end -}}

{{/* Fails the render when the bucket is not configured, or when an update could run two
compactors on the bucket at once. */}}
{{- define "compactor.validateValues" -}}
{{- if and (not (.Values.existingObjstoreSecret | default (.Values.global).existingObjstoreSecret)) (not (include "compactor.objstoreConfig" .)) -}}
{{- fail "compactor: set objstoreConfig or existingObjstoreSecret (or global.objstoreConfig / global.existingObjstoreSecret in the umbrella chart)" -}}
{{- end -}}
{{- if ne ((.Values.updateStrategy).type | default "Recreate") "Recreate" -}}
{{- fail (printf "compactor: updateStrategy.type must be Recreate, not %s: a rolling update would run two compactors on one bucket" .Values.updateStrategy.type) -}}
{{- end -}}
{{- end -}}
