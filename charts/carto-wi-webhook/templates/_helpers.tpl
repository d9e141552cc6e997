{{/* Chart name. */}}
{{- define "cwi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of the release's objects: the release name when it already holds the chart name. */}}
{{- define "cwi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 59 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "cwi.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 59 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 59 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The certificate Secret (self-managed, cert-manager's, or the provided one). */}}
{{- define "cwi.tlsSecret" -}}
{{- if eq .Values.certs.mode "provided" -}}
{{- .Values.certs.provided.secretName -}}
{{- else -}}
{{- printf "%s-tls" (include "cwi.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "cwi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cwi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cwi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "cwi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Which API requests reach the webhook: the target ServiceAccount by name, Deployments that
run as it (serviceAccountName or the deprecated serviceAccount) and, for validation, the config
ConfigMap by name. Everything else is never sent. */}}
{{- define "cwi.matchTargets" -}}
(request.resource.resource == 'serviceaccounts' && object.metadata.name == '{{ .Values.policy.serviceAccount }}') ||
(request.resource.resource == 'deployments' &&
  ((has(object.spec.template.spec.serviceAccountName) && object.spec.template.spec.serviceAccountName == '{{ .Values.policy.serviceAccount }}') ||
   (has(object.spec.template.spec.serviceAccount) && object.spec.template.spec.serviceAccount == '{{ .Values.policy.serviceAccount }}')))
{{- end -}}

{{/* The admin listener's port (/livez, /readyz, /metrics); the schema keeps webhook.port off it. */}}
{{- define "cwi.adminPort" -}}
8080
{{- end -}}

{{/* An object being deleted (finalizers pending) is never sent: removing a finalizer, and so
deleting a namespace, never waits on the webhook. */}}
{{- define "cwi.notDeleting" -}}
- name: not-being-deleted
  expression: "!has(object.metadata.deletionTimestamp)"
{{- end -}}

{{/* clientConfig of one webhook; path is /mutate or /validate. */}}
{{- define "cwi.clientConfig" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
clientConfig:
  {{- if $root.Values.webhook.url }}
  url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) $path | quote }}
  {{- else }}
  service:
    name: {{ include "cwi.fullname" $root }}
    namespace: {{ $root.Release.Namespace }}
    path: {{ $path }}
    port: {{ $root.Values.service.port }}
  {{- end }}
  {{- if eq $root.Values.certs.mode "provided" }}
  caBundle: {{ $root.Values.certs.provided.caBundle }}
  {{- end }}
{{- end -}}

{{/* Namespaces the API server never sends: kube-system, the release's own, opted-out ones. */}}
{{- define "cwi.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- toYaml (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq) | nindent 8 }}
    - key: workload-identity.carto.com/inject
      operator: NotIn
      values: ["false"]
{{- end -}}

{{/* The arguments of `carto-wi-webhook serve`. */}}
{{- define "cwi.args" -}}
{{- if eq (int .Values.webhook.port) (int (include "cwi.adminPort" .)) }}
{{- fail (printf "webhook.port: %v is the admin port (/livez, /readyz, /metrics); choose another, e.g. 10250" .Values.webhook.port) }}
{{- end }}
- serve
- --listen=0.0.0.0:{{ .Values.webhook.port }}
- --admin-listen=0.0.0.0:{{ include "cwi.adminPort" . }}
- --config-map={{ .Values.config.name }}
- --service-account={{ .Values.policy.serviceAccount }}
- --enforcement={{ .Values.policy.enforcement }}
{{- if .Values.policy.requireConfig }}
- --require-config
{{- end }}
{{- with .Values.policy.deployments }}
- --deployments={{ join "," . }}
{{- end }}
{{- if .Values.policy.includeInitContainers }}
- --include-init-containers
{{- end }}
{{- with .Values.policy.extraEnvAllowed }}
- --extra-env={{ join "," . }}
{{- end }}
{{- if .Values.policy.objectOptOut }}
- --object-opt-out
{{- end }}
- --reconcile={{ .Values.reconcile.enabled }}
- --resync={{ .Values.reconcile.resync }}
- --reconcile-qps={{ .Values.reconcile.qps }}
- --lease={{ include "cwi.fullname" . }}
- --service={{ include "cwi.fullname" . }}
{{- if eq .Values.certs.mode "self" }}
- --certs=self
- --cert-secret={{ include "cwi.tlsSecret" . }}
- --webhook-configs={{ include "cwi.fullname" . }}
{{- else }}
- --certs=files
- --tls-cert=/tls/tls.crt
- --tls-key=/tls/tls.key
{{- end }}
- --shutdown-delay={{ .Values.shutdown.delaySeconds }}s
- --shutdown-timeout={{ .Values.shutdown.timeoutSeconds }}s
- --log-level={{ .Values.log.level }}
- --log-format={{ .Values.log.format }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}
