{{/*
Checks against the live cluster, run before Helm applies anything (`lookup`; `helm template`
without a cluster renders nothing to check, so they pass there). Each fails with what is wrong and
the command that fixes it, instead of a release that stalls or silently loses settings.
*/}}
{{- define "weft.checks" -}}
{{- include "weft.checkPodSecurity" . -}}
{{- if .Values.installation.enabled -}}
{{- include "weft.checkInstallationCRD" . -}}
{{- end -}}
{{- end }}

{{/*
Pod Security admission: the operator runs on the host network, which only the "privileged" level
admits. A namespace enforcing baseline or restricted would refuse its pods (ReplicaSet
FailedCreate, the release "deployed" but nothing running). weft-system, where the agents run, is
created and labelled privileged by the operator.
*/}}
{{- define "weft.checkPodSecurity" -}}
{{- $name := include "weft.namespace" . -}}
{{- $namespace := lookup "v1" "Namespace" "" $name -}}
{{- if $namespace -}}
{{- $labels := $namespace.metadata.labels | default dict -}}
{{- $level := index $labels "pod-security.kubernetes.io/enforce" | default "" -}}
{{- if and $level (ne $level "privileged") -}}
{{- fail (printf "namespace %s enforces Pod Security level %q (label pod-security.kubernetes.io/enforce), but the operator runs on the host network, which only the \"privileged\" level admits: its pods would never be created. Allow it with `kubectl label namespace %s pod-security.kubernetes.io/enforce=privileged --overwrite`, or install into a namespace that admits privileged pods" $name $level $name) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
The live Installation CRD must know every field installation.spec sets: the API server prunes
unknown fields, so an Installation applied before its CRD was upgraded would silently lose them
(Helm creates the CRDs in crds/ only on the first install; the operator upgrades them when it
starts, after Helm has applied the Installation).
*/}}
{{- define "weft.checkInstallationCRD" -}}
{{- $crd := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "installations.operator.weft.dev" -}}
{{- if $crd -}}
{{- range $crd.spec.versions -}}
{{- if eq .name "v1" -}}
{{- $spec := .schema.openAPIV3Schema.properties.spec | default dict -}}
{{- include "weft.checkFields" (dict "schema" $spec "value" $.Values.installation.spec "path" "installation.spec") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
One level of weft.checkFields: (dict "schema" OPENAPI "value" VALUE "path" PATH).
*/}}
{{- define "weft.checkFields" -}}
{{- $schema := .schema | default dict -}}
{{- $path := .path -}}
{{- if and (kindIs "map" .value) (not (index $schema "x-kubernetes-preserve-unknown-fields")) -}}
{{- if $schema.properties -}}
{{- range $key, $value := .value -}}
{{- $field := index $schema.properties $key -}}
{{- if not $field -}}
{{- fail (printf "%s.%s: the installed Installation CRD (installations.operator.weft.dev) has no such field, so the API server would drop it from Installation/default. Upgrade weft's CRDs first with `kubectl apply --server-side --force-conflicts -f <this chart>/crds/`, then run this helm command again" $path $key) -}}
{{- end -}}
{{- include "weft.checkFields" (dict "schema" $field "value" $value "path" (printf "%s.%s" $path $key)) -}}
{{- end -}}
{{- else if kindIs "map" $schema.additionalProperties -}}
{{- range $key, $value := .value -}}
{{- include "weft.checkFields" (dict "schema" $schema.additionalProperties "value" $value "path" (printf "%s.%s" $path $key)) -}}
{{- end -}}
{{- end -}}
{{- else if and (kindIs "slice" .value) $schema.items -}}
{{- range $index, $item := .value -}}
{{- include "weft.checkFields" (dict "schema" $schema.items "value" $item "path" (printf "%s[%d]" $path $index)) -}}
{{- end -}}
{{- end -}}
{{- end }}
