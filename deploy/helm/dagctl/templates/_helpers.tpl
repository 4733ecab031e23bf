{{- define "dagctl.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dagctl.labels" -}}
app.kubernetes.io/name: dagctl
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dagctl.selector" -}}
app.kubernetes.io/name: dagctl
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image, by digest only. */}}
{{- define "dagctl.image" -}}
{{- if not (regexMatch "^sha256:[a-f0-9]{64}$" (.Values.image.digest | default "")) -}}
{{- fail "image.digest must be the image's digest, sha256:<64 hex> (dagctl is deployed by digest, never by a mutable tag)" -}}
{{- end -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- end -}}

{{- define "dagctl.executionApiUrl" -}}
{{- printf "http://%s-scheduler.%s.svc:%d" (include "dagctl.fullname" .) .Release.Namespace (int .Values.scheduler.port) -}}
{{- end -}}

{{/* The hardened security context of every dagctl container. */}}
{{- define "dagctl.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* Environment from the release's Secret (never in a ConfigMap). */}}
{{- define "dagctl.secretEnv" -}}
- name: DAGCTL_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ .Values.secrets.name }}, key: database-url}}
- name: DAGCTL_SECRET_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.secrets.name }}, key: secret-key}}
- name: DAGCTL_FERNET_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.secrets.name }}, key: fernet-key}}
{{- end -}}
