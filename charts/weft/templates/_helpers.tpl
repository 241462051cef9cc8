{{/*
The operator's name: every object the chart creates for it is called this (as in config/).
*/}}
{{- define "weft.name" -}}
weft-operator
{{- end }}

{{/*
Labels of the operator's objects: the two of config/ (which its pods also carry) and Helm's release
bookkeeping (only on the objects themselves, never on selectors or pod templates). The Installation
and the hooks carry part-of and the bookkeeping.
*/}}
{{- define "weft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weft.name" . }}
app.kubernetes.io/part-of: weft
{{- end }}

{{- define "weft.labels" -}}
{{ include "weft.selectorLabels" . }}
{{ include "weft.releaseLabels" . }}
{{- end }}

{{- define "weft.releaseLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
An image reference from {registry, repository, tag}; the tag defaults to the chart's appVersion.
*/}}
{{- define "weft.image" -}}
{{- $registry := .image.registry | trimSuffix "/" -}}
{{- $tag := .image.tag | default .appVersion -}}
{{- if $registry -}}
{{ $registry }}/{{ .image.repository }}:{{ $tag }}
{{- else -}}
{{ .image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/*
Names of the hooks' identity and role.
*/}}
{{- define "weft.hookName" -}}
weft-helm-hooks
{{- end }}
