{{/*
The operator's name: the app.kubernetes.io/name label of its objects and pods (nameOverride), and
the name of every object the chart creates for it (fullnameOverride, else the name). Both default
to weft-operator, the names of config/.
*/}}
{{- define "weft.name" -}}
{{- .Values.nameOverride | default "weft-operator" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "weft.fullname" -}}
{{- .Values.fullnameOverride | default (include "weft.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/*
The namespace of the operator's namespaced objects: namespaceOverride, else the release's.
*/}}
{{- define "weft.namespace" -}}
{{- .Values.namespaceOverride | default .Release.Namespace -}}
{{- end }}

{{/*
The operator's ServiceAccount: serviceAccount.name, else the full name.
*/}}
{{- define "weft.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "weft.fullname" .) -}}
{{- end }}

{{/*
Labels of the operator's objects: the two of config/ (which its pods also carry) and Helm's release
bookkeeping plus commonLabels (only on the objects themselves, never on selectors or pod
templates). The Installation and the hooks carry part-of and the bookkeeping.
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
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
An image reference from {registry, repository, tag, digest}: <registry>/<repository>@<digest> when
a digest is set (the tag is then ignored), else :<tag>, the tag defaulting to the chart's
appVersion.
*/}}
{{- define "weft.image" -}}
{{- $registry := .image.registry | trimSuffix "/" -}}
{{- $name := .image.repository -}}
{{- if $registry -}}
{{- $name = printf "%s/%s" $registry .image.repository -}}
{{- end -}}
{{- if .image.digest -}}
{{ $name }}@{{ .image.digest }}
{{- else -}}
{{ $name }}:{{ .image.tag | default .appVersion }}
{{- end -}}
{{- end }}

{{/*
Where the Installation's images come from unless installation.spec.registry says otherwise: the
operator's own registry and the directory of its repository (ghcr.io + weft/weft-operator gives
ghcr.io/weft, so the agent is ghcr.io/weft/weft-agent), so a mirror set once in image.registry
serves every weft image.
*/}}
{{- define "weft.imagesRegistry" -}}
{{- $registry := .Values.image.registry | trimSuffix "/" -}}
{{- $directory := dir .Values.image.repository -}}
{{- $parts := list -}}
{{- if $registry }}{{ $parts = append $parts $registry }}{{ end -}}
{{- if ne $directory "." }}{{ $parts = append $parts $directory }}{{ end -}}
{{- join "/" $parts -}}
{{- end }}

{{/*
Names of the hooks' identity and role.
*/}}
{{- define "weft.hookName" -}}
weft-helm-hooks
{{- end }}
