{{/*
The pod spec of a hook running `kubectl <args>` as the hooks' ServiceAccount, on the host network
(like the operator, it must work whatever state the pod network is in), unprivileged, with a
writable /tmp for kubectl's cache. Call with (dict "root" $ "name" NAME "args" LIST).
*/}}
{{- define "weft.hookPodSpec" -}}
{{- $hooks := .root.Values.hooks -}}
serviceAccountName: {{ include "weft.hookName" .root }}
restartPolicy: Never
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- with .root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $hooks.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $hooks.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: {{ .name }}
    image: {{ include "weft.image" (dict "image" $hooks.image "appVersion" .root.Chart.AppVersion) }}
    imagePullPolicy: {{ $hooks.image.pullPolicy }}
    command: ["/bin/kubectl"]
    args:
      {{- toYaml .args | nindent 6 }}
    env:
      - name: HOME
        value: /tmp
    resources:
      requests: {cpu: 10m, memory: 32Mi}
      limits: {memory: 128Mi}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  - name: tmp
    emptyDir: {}
{{- end }}
