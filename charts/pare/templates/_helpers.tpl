{{/*
Named templates of the Pare sidecar. Each one works from this chart and from
a chart that depends on it: `include "pare.sidecarContainer" .` from your
chart gets your chart's context, whose .Values are yours, so every template
first finds Pare's own context (pare.context) and reads only that.
*/}}

{{/*
pare.context sets .out.c to the pare chart's template context: the caller's
when it is the pare chart (or a subchart context passed as .Subcharts.ALIAS),
.Subcharts.pare when the caller is a chart that depends on pare. Called as
(dict "ctx" . "out" $d); it renders nothing.
*/}}
{{- define "pare.context" -}}
{{- $c := .ctx -}}
{{- if and (hasKey $c "Subcharts") $c.Subcharts (hasKey $c.Subcharts "pare") -}}
{{- $c = index $c.Subcharts "pare" -}}
{{- end -}}
{{- if not (and (hasKey $c "Values") (hasKey $c.Values "egressPort") (hasKey $c.Values "metricsPort")) -}}
{{- fail "pare: no Pare values in this context: add the pare chart as a dependency of your chart (named pare), or pass its context, e.g. include \"pare.sidecarContainer\" .Subcharts.ALIAS" -}}
{{- end -}}
{{- $_ := set .out "c" $c -}}
{{- end -}}

{{- define "pare.fullname" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- with $d.c -}}
{{- default (printf "%s-pare" .Release.Name) .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pare.labels" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- with $d.c -}}
app.kubernetes.io/name: pare
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end -}}
{{- end -}}

{{/*
pare.podLabels are the labels of a pod that runs the sidecar: put them in
your pod template's metadata.labels. The PodMonitor and the NetworkPolicy of
this release select pods by them.
*/}}
{{- define "pare.podLabels" -}}
pare.dev/sidecar: {{ include "pare.fullname" . | quote }}
{{- end -}}

{{/*
pare.podAnnotations: put them in your pod template's metadata.annotations,
so that pods restart when the sidecar's configuration changes.
*/}}
{{- define "pare.podAnnotations" -}}
checksum/pare-config: {{ include "pare.config" . | sha256sum | quote }}
{{- end -}}

{{- define "pare.image" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- with $d.c -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
pare.memLimitBytes is resources.limits.memory in bytes ("" without a limit).
values.schema.json admits only an integer with an optional binary or decimal
suffix, which is what this parses: Helm has no quantity parser.
*/}}
{{- define "pare.memLimitBytes" -}}
{{- $q := toString (dig "limits" "memory" "" .Values.resources) -}}
{{- if $q -}}
{{- $m := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $m $q -}}
{{- $mult := get (dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776) $unit -}}
{{- if or (not $m) (not $mult) -}}
{{- fail (printf "pare: resources.limits.memory %q: want an integer with an optional k, M, G, T, Ki, Mi, Gi or Ti suffix" $q) -}}
{{- end -}}
{{- mul (int64 $m) $mult -}}
{{- end -}}
{{- end -}}

{{/*
pare.config is the sidecar's config.yaml: keys as `proxy serve --config`
reads them (unknown keys are errors there; charts/chart_test.go runs
`proxy check --config` on it).
*/}}
{{- define "pare.config" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- with $d.c -}}
{{- if or (eq (int .Values.egressPort) (int .Values.adminPort)) (eq (int .Values.egressPort) (int .Values.metricsPort)) (eq (int .Values.adminPort) (int .Values.metricsPort)) -}}
{{- fail (printf "pare: egressPort %d, adminPort %d and metricsPort %d must differ" (int .Values.egressPort) (int .Values.adminPort) (int .Values.metricsPort)) -}}
{{- end -}}
{{- if and .Values.consent.url .Values.consent.configMap -}}
{{- fail "pare: consent.url and consent.configMap are exclusive: one consent source" -}}
{{- end -}}
listen: 127.0.0.1:{{ int .Values.egressPort }}
admin: 127.0.0.1:{{ int .Values.adminPort }}
metrics_listen: ":{{ int .Values.metricsPort }}"
pprof: {{ .Values.pprof }}
{{- if .Values.policies.configMap }}
policies: /etc/pare/policies
{{- end }}
service: {{ .Values.service | quote }}
# The container's --ledger flag names the file per pod, in this directory.
ledger: /var/lib/pare/ledger.jsonl
ledger_max_bytes: {{ .Values.ledger.maxBytes }}
# The ledger's signing key and the drop-in CA: generated on first start, kept
# with the ledger (the root filesystem is read-only).
state_dir: /var/lib/pare/state
{{- if .Values.hmacKeySecret }}
hmac_key_file: /etc/pare/hmac/hmac.key
{{- end }}
max_body: {{ .Values.maxBody }}
max_body_memory: {{ .Values.maxBodyMemory }}
gc_percent: {{ int .Values.gcPercent }}
dry_run: {{ .Values.dryRun }}
{{- if .Values.consent.url }}
consent_url: {{ .Values.consent.url | quote }}
consent_ttl: {{ .Values.consent.ttl }}
{{- else if .Values.consent.configMap }}
consents: /etc/pare/consents/consents.yaml
{{- end }}
log_format: {{ .Values.logFormat }}
log_level: {{ .Values.logLevel }}
upstream_timeout: {{ .Values.upstreamTimeout }}
{{- end -}}
{{- end -}}

{{/*
pare.sidecarContainer is the Pare container. It is a native sidecar
(Kubernetes 1.29+): put it under initContainers. The kubelet starts it
before the app containers, starts them once its startup probe passes (a
valid policy is loaded), keeps it running beside them, and stops it after
them, so a Job's pod still completes.
*/}}
{{- define "pare.sidecarContainer" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- with $d.c -}}
- name: pare
  image: {{ include "pare.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  restartPolicy: Always
  # One ledger file per pod: pods sharing a volume must not share a hash
  # chain (the ledger's lock would stop the second one).
  args: ["serve", "--config", "/etc/pare/config/config.yaml", "--ledger", "/var/lib/pare/ledger-$(POD_NAME).jsonl"]
  ports:
    - name: pare-metrics
      containerPort: {{ int .Values.metricsPort }}
      protocol: TCP
  env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
  {{- $limit := include "pare.memLimitBytes" . }}
  {{- if $limit }}
    # 90% of the memory limit: the Go runtime collects harder as the heap
    # nears it, before the kernel's OOM killer would act at 100%.
    - name: GOMEMLIMIT
      value: {{ div (mul (int64 $limit) 9) 10 | quote }}
  {{- end }}
  startupProbe:
    httpGet: {path: /readyz, port: pare-metrics}
    periodSeconds: 1
    failureThreshold: 120
  readinessProbe:
    httpGet: {path: /readyz, port: pare-metrics}
    periodSeconds: 5
  livenessProbe:
    httpGet: {path: /healthz, port: pare-metrics}
    periodSeconds: 10
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities: {drop: [ALL]}
    seccompProfile: {type: RuntimeDefault}
  resources: {{- toYaml .Values.resources | nindent 4 }}
  volumeMounts:
    - {name: pare-config, mountPath: /etc/pare/config, readOnly: true}
    - {name: pare-ledger, mountPath: /var/lib/pare}
    {{- if .Values.policies.configMap }}
    - {name: pare-policies, mountPath: /etc/pare/policies, readOnly: true}
    {{- end }}
    {{- if .Values.policies.contractsConfigMap }}
    - {name: pare-contracts, mountPath: /etc/pare/policies/contracts, readOnly: true}
    {{- end }}
    {{- if .Values.hmacKeySecret }}
    - {name: pare-hmac, mountPath: /etc/pare/hmac, readOnly: true}
    {{- end }}
    {{- if and .Values.consent.configMap (not .Values.consent.url) }}
    - {name: pare-consents, mountPath: /etc/pare/consents, readOnly: true}
    {{- end }}
{{- end -}}
{{- end -}}

{{/* pare.sidecarVolumes are the volumes pare.sidecarContainer mounts. */}}
{{- define "pare.sidecarVolumes" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- with $d.c -}}
- name: pare-config
  configMap: {name: {{ include "pare.fullname" . | quote }}}
- name: pare-ledger
  {{- if .Values.ledger.existingClaim }}
  persistentVolumeClaim: {claimName: {{ .Values.ledger.existingClaim | quote }}}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if .Values.policies.configMap }}
- name: pare-policies
  configMap: {name: {{ .Values.policies.configMap | quote }}}
{{- end }}
{{- if .Values.policies.contractsConfigMap }}
- name: pare-contracts
  configMap: {name: {{ .Values.policies.contractsConfigMap | quote }}}
{{- end }}
{{- if .Values.hmacKeySecret }}
- name: pare-hmac
  secret: {secretName: {{ .Values.hmacKeySecret | quote }}}
{{- end }}
{{- if and .Values.consent.configMap (not .Values.consent.url) }}
- name: pare-consents
  configMap: {name: {{ .Values.consent.configMap | quote }}}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
pare.appEnv points an app container at the sidecar: HTTP_PROXY for the
vendors' http:// URLs, HTTPS_PROXY too so that an https:// call fails at
the sidecar (Pare refuses CONNECT) instead of leaving unfiltered, and
NO_PROXY for the cluster-internal names and CIDRs of noProxy. Upper and
lower case, since HTTP clients differ in which they read.
*/}}
{{- define "pare.appEnv" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- with $d.c -}}
{{- $proxy := printf "http://127.0.0.1:%d" (int .Values.egressPort) -}}
{{- $noProxy := join "," .Values.noProxy -}}
- {name: HTTP_PROXY, value: {{ $proxy | quote }}}
- {name: http_proxy, value: {{ $proxy | quote }}}
- {name: HTTPS_PROXY, value: {{ $proxy | quote }}}
- {name: https_proxy, value: {{ $proxy | quote }}}
- {name: NO_PROXY, value: {{ $noProxy | quote }}}
- {name: no_proxy, value: {{ $noProxy | quote }}}
{{- end -}}
{{- end -}}
