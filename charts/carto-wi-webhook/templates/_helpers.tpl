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

{{/* CEL, for the ValidatingAdmissionPolicy: the keys of map A (new) and map B (old) that differ,
other than those of list X (both dynamic values; a key only in one of them differs). */}}
{{- define "cwi.vap.changed" -}}
{{- $a := index . 0 -}}{{- $b := index . 1 -}}{{- $x := index . 2 -}}
({{ $a }}.filter(k, !(k in {{ $x }}) && (!(k in {{ $b }}) || {{ $a }}[k] != {{ $b }}[k])) + {{ $b }}.filter(k, !(k in {{ $x }}) && !(k in {{ $a }})))
{{- end -}}

{{/* CEL: BODY with NAME bound to the value of INIT (`cel.bind` is not in Kubernetes' CEL). */}}
{{- define "cwi.vap.bind" -}}
[{{ index . 1 }}].map({{ index . 0 }}, {{ index . 2 }})[0]
{{- end -}}

{{/* CEL: `FIELD[NAME]: key, ...` for each container of list FIELD (containers, initContainers)
with a field other than env changed (containers are paired by name). */}}
{{- define "cwi.vap.containerFields" -}}
{{- $new := printf "variables.new.spec.template.spec.?%s.orValue([])" . -}}
{{- $old := printf "variables.old.spec.template.spec.?%s.orValue([])" . -}}
{{- $changed := include "cwi.vap.changed" (list "c" "o" "['env']") -}}
{{ $new }}.filter(c, {{ $old }}.exists(o, o.name == c.name && size({{ $changed }}) > 0))
  .map(c, {{ include "cwi.vap.bind" (list "o" (printf "%s.filter(o, o.name == c.name)[0]" $old) (printf "'%s[' + c.name + ']: ' + %s.join(', ')" . $changed)) }})
{{- end -}}

{{/* CEL: `FIELD[NAME]: VARIABLE, ...` for each container of list FIELD whose env entries outside
the managed names (and the names being taken back) differ (added, changed, removed; or only
their order). */}}
{{- define "cwi.vap.containerEnv" -}}
{{- $new := printf "variables.new.spec.template.spec.?%s.orValue([])" . -}}
{{- $old := printf "variables.old.spec.template.spec.?%s.orValue([])" . -}}
{{- $keep := "orValue([]).filter(e, !(e.name in variables.managedEnv) && !(e.name in variables.takeBack))" -}}
{{- $names := include "cwi.vap.bind" (list "added" "ne.filter(e, !(e in oe)).map(e, e.name)" "added + oe.filter(e, !(e in ne) && !(e.name in added)).map(e, e.name)") -}}
{{- $say := printf "'%s[' + c.name + ']: ' + (size(names) > 0 ? names.join(', ') : 'the order of the other entries')" . -}}
{{ $new }}.filter(c, {{ $old }}.exists(o, o.name == c.name && c.?env.{{ $keep }} != o.?env.{{ $keep }}))
  .map(c, {{ include "cwi.vap.bind" (list "o" (printf "%s.filter(o, o.name == c.name)[0]" $old)
    (include "cwi.vap.bind" (list "ne" (printf "c.?env.%s" $keep)
      (include "cwi.vap.bind" (list "oe" (printf "o.?env.%s" $keep)
        (include "cwi.vap.bind" (list "names" $names $say))))))) }})
{{- end -}}

{{/* CEL: `FIELD[NAME]: VARIABLE, ...` for each container of list FIELD with an entry of a name being
taken back (recorded in managed-env, no longer allowed) that is not as it was: such entries may
only be removed. */}}
{{- define "cwi.vap.takeBackEnv" -}}
{{- $new := printf "variables.new.spec.template.spec.?%s.orValue([])" . -}}
{{- $old := printf "variables.old.spec.template.spec.?%s.orValue([])" . -}}
{{- $added := printf "c.?env.orValue([]).filter(e, e.name in variables.takeBack && !%s.exists(o, o.name == c.name && e in o.?env.orValue([])))" $old -}}
{{ $new }}.filter(c, size({{ $added }}) > 0)
  .map(c, '{{ . }}[' + c.name + ']: ' + {{ $added }}.map(e, e.name).join(', '))
{{- end -}}

{{/* CEL: the names a managed-env annotation value lists (trimmed, blanks dropped). */}}
{{- define "cwi.vap.recorded" -}}
{{ . }}.spec.template.?metadata.?annotations[?'workload-identity.carto.com/managed-env'].orValue('').split(',').map(r, r.trim()).filter(r, r != '')
{{- end -}}

{{/* CEL: `FIELD[NAME]: VARIABLE, ...` for each container of list FIELD with a managed entry set
(added or changed) to anything but a literal value (e.g. valueFrom). */}}
{{- define "cwi.vap.managedNotLiteral" -}}
{{- $new := printf "variables.new.spec.template.spec.?%s.orValue([])" . -}}
{{- $old := printf "variables.old.spec.template.spec.?%s.orValue([])" . -}}
{{- $set := printf "c.?env.orValue([]).filter(e, e.name in variables.managedEnv && !e.all(k, k in ['name', 'value']) && !%s.exists(o, o.name == c.name && e in o.?env.orValue([])))" $old -}}
{{ $new }}.filter(c, size({{ $set }}) > 0)
  .map(c, '{{ . }}[' + c.name + ']: ' + {{ $set }}.map(e, e.name).join(', '))
{{- end -}}
