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
{{- include "pare.features" (dict "v" $c.Values "out" .out) -}}
{{- end -}}

{{/*
pare.features sets .out.f to what the values turn on, derived in one place:
envoy (mode envoy), dropIn (mode proxy with dropIn.enabled), genCA (drop-in
with a CA generated in the pod), ownCA (drop-in with the CA from a Secret),
transparent, iptables (the redirecting init containers), bundle, pg (a
PostgreSQL DSN is in use).
*/}}
{{- define "pare.features" -}}
{{- $v := .v -}}
{{- $envoy := eq $v.mode "envoy" -}}
{{- $dropIn := and (not $envoy) $v.dropIn.enabled -}}
{{- $transparent := and $dropIn $v.dropIn.transparent.enabled -}}
{{- $f := dict "envoy" $envoy "dropIn" $dropIn
      "genCA" (and $dropIn (not $v.dropIn.caSecret.name))
      "ownCA" (and $dropIn (ne $v.dropIn.caSecret.name ""))
      "transparent" $transparent
      "iptables" (and $transparent (eq $v.dropIn.transparent.redirect "iptables"))
      "bundle" (ne $v.policies.bundle.url "")
      "pg" (or (ne $v.ledger.sink.dsn "") (ne $v.consent.dsn "")) -}}
{{- $_ := set .out "f" $f -}}
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
so that pods restart when the sidecar's configuration (anything in the
chart's ConfigMap) changes.
*/}}
{{- define "pare.podAnnotations" -}}
checksum/pare-config: {{ include "pare.configMapData" . | sha256sum | quote }}
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

{{/* pare.envoyImage is envoy.image, by digest when one is given. Takes envoy.image. */}}
{{- define "pare.envoyImage" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/*
pare.memLimitBytes is the memory limit of a resources block, in bytes (""
without a limit). values.schema.json admits only an integer with an
optional binary or decimal suffix, which is what this parses: Helm has no
quantity parser.
*/}}
{{- define "pare.memLimitBytes" -}}
{{- $q := toString (dig "limits" "memory" "" .) -}}
{{- if $q -}}
{{- $m := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $m $q -}}
{{- $mult := get (dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776) $unit -}}
{{- if or (not $m) (not $mult) -}}
{{- fail (printf "pare: memory limit %q: want an integer with an optional k, M, G, T, Ki, Mi, Gi or Ti suffix" $q) -}}
{{- end -}}
{{- mul (int64 $m) $mult -}}
{{- end -}}
{{- end -}}

{{/*
pare.goMemLimitEnv is the GOMEMLIMIT variable of a Go container with this
resources block: 90% of its memory limit, so the Go runtime collects harder
as the heap nears it, before the kernel's OOM killer would act at 100%.
*/}}
{{- define "pare.goMemLimitEnv" -}}
{{- $limit := include "pare.memLimitBytes" . -}}
{{- if $limit -}}
# 90% of the memory limit: the Go runtime collects harder as the heap
# nears it, before the kernel's OOM killer would act at 100%.
- name: GOMEMLIMIT
  value: {{ div (mul (int64 $limit) 9) 10 | quote }}
{{- end -}}
{{- end -}}

{{/*
pare.validate fails rendering on values that each make sense alone but not
together (values.schema.json checks each value). Takes the pare context.
*/}}
{{- define "pare.validate" -}}
{{- $v := .Values -}}
{{- $ports := dict "egressPort" (int $v.egressPort) "adminPort" (int $v.adminPort) "metricsPort" (int $v.metricsPort) -}}
{{- if eq $v.mode "envoy" -}}
{{- $_ := set $ports "envoy.extprocPort" (int $v.envoy.extprocPort) -}}
{{- $_ := set $ports "envoy.xdsPort" (int $v.envoy.xdsPort) -}}
{{- $_ := set $ports "envoy.adminPort" (int $v.envoy.adminPort) -}}
{{- else if and $v.dropIn.enabled $v.dropIn.transparent.enabled -}}
{{- $_ := set $ports "dropIn.transparent.port" (int $v.dropIn.transparent.port) -}}
{{- end -}}
{{- $named := list -}}{{- $nums := list -}}
{{- range $k := keys $ports | sortAlpha -}}
{{- $named = append $named (printf "%s %d" $k (get $ports $k)) -}}{{- $nums = append $nums (get $ports $k) -}}
{{- end -}}
{{- if ne (len $nums) (len (uniq $nums)) -}}
{{- fail (printf "pare: %s must differ" (join ", " $named)) -}}
{{- end -}}
{{- if gt (len (compact (list $v.consent.url $v.consent.configMap $v.consent.dsn))) 1 -}}
{{- fail "pare: consent.url, consent.configMap and consent.dsn are exclusive: one consent source" -}}
{{- end -}}
{{- with $v.policies.bundle -}}
{{- if .url -}}
{{- if $v.policies.configMap -}}
{{- fail "pare: policies.configMap and policies.bundle.url are exclusive: a sidecar takes its policy from one place" -}}
{{- end -}}
{{- if eq (len (compact (list .keys.configMap .keys.secret))) 0 -}}
{{- fail "pare: policies.bundle.url needs policies.bundle.keys.configMap or .secret: bundles are only taken signed" -}}
{{- end -}}
{{- if and .keys.configMap .keys.secret -}}
{{- fail "pare: policies.bundle.keys.configMap and .secret are exclusive" -}}
{{- end -}}
{{- if eq $v.mode "envoy" -}}
{{- fail "pare: mode envoy takes no policies.bundle: proxy xds reads only a policies directory, so Envoy's routes would come from other contracts than the ones ext_proc enforces" -}}
{{- end -}}
{{- else if or .keys.configMap .keys.secret .tokenSecret.name .caConfigMap.name -}}
{{- fail "pare: policies.bundle is configured but policies.bundle.url is empty" -}}
{{- end -}}
{{- end -}}
{{- range $k, $dsn := dict "ledger.sink.dsn" $v.ledger.sink.dsn "consent.dsn" $v.consent.dsn -}}
{{- if or (regexMatch "(?i)[?&]password=" $dsn) (regexMatch "^[a-z]+://[^@/]*:[^@/]*@" $dsn) -}}
{{- fail (printf "pare: %s carries a password: it would be in the ConfigMap and the process list; give postgres.passwordSecret or .passfileSecret" $k) -}}
{{- end -}}
{{- end -}}
{{- if and $v.postgres.passwordSecret.name $v.postgres.passfileSecret.name -}}
{{- fail "pare: postgres.passwordSecret and postgres.passfileSecret are exclusive" -}}
{{- end -}}
{{- if and (or $v.postgres.passwordSecret.name $v.postgres.passfileSecret.name $v.postgres.rootCertConfigMap.name) (not (or $v.ledger.sink.dsn $v.consent.dsn)) -}}
{{- fail "pare: postgres is configured but neither ledger.sink.dsn nor consent.dsn is set" -}}
{{- end -}}
{{- if and $v.ledger.witness.existingClaim (eq $v.ledger.witness.existingClaim $v.ledger.existingClaim) -}}
{{- fail "pare: ledger.witness.existingClaim is the ledger's own claim: a witness on the ledger's volume proves nothing" -}}
{{- end -}}
{{- with $v.dropIn -}}
{{- if eq $v.mode "envoy" -}}
{{- if or .caSecret.name .trustBundle.configMap .passthrough .transparent.enabled -}}
{{- fail "pare: dropIn.caSecret, trustBundle, passthrough and transparent are for mode proxy: Envoy terminates no tunnels" -}}
{{- end -}}
{{- else -}}
{{- if and (not .enabled) (or .caSecret.name .trustBundle.configMap .passthrough .transparent.enabled) -}}
{{- fail "pare: dropIn.caSecret, trustBundle, passthrough and transparent need dropIn.enabled" -}}
{{- end -}}
{{- if and .trustBundle.configMap (not .caSecret.name) -}}
{{- fail "pare: dropIn.trustBundle needs dropIn.caSecret: a CA generated in the pod is in no bundle made beforehand" -}}
{{- end -}}
{{- if and .transparent.enabled (eq .transparent.redirect "iptables") (not .transparent.iptables.image) -}}
{{- fail "pare: dropIn.transparent.redirect iptables needs dropIn.transparent.iptables.image (an image with iptables-restore)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq $v.mode "envoy" -}}
{{- if eq (int $v.envoy.runAsUser) 65532 -}}
{{- fail "pare: envoy.runAsUser 65532 is Pare's UID: give Envoy its own (101 in the envoyproxy images)" -}}
{{- end -}}
{{- if not (and $v.envoy.image.repository (or $v.envoy.image.tag $v.envoy.image.digest)) -}}
{{- fail "pare: mode envoy needs envoy.image.repository and a tag or digest: the Envoy image is yours" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
pare.config is the sidecar's config.yaml: keys as `proxy serve --config`
(and `proxy extproc --config`) read them (unknown keys are errors there;
charts/chart_test.go runs `proxy check --config` on it).
*/}}
{{- define "pare.config" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- $f := $d.f -}}
{{- with $d.c -}}
{{- include "pare.validate" . -}}
{{- if $f.envoy -}}
# proxy extproc: Envoy's ext_proc filter calls this gRPC listener.
listen: 127.0.0.1:{{ int .Values.envoy.extprocPort }}
{{- else -}}
listen: 127.0.0.1:{{ int .Values.egressPort }}
{{- end }}
admin: 127.0.0.1:{{ int .Values.adminPort }}
metrics_listen: ":{{ int .Values.metricsPort }}"
pprof: {{ .Values.pprof }}
{{- if .Values.policies.configMap }}
policies: /etc/pare/policies
{{- end }}
{{- with .Values.policies.bundle }}
{{- if .url }}
bundle: {{ .url | quote }}
bundle_key:
  {{- range .keys.files }}
  - {{ printf "/etc/pare/bundle-keys/%s" . | quote }}
  {{- end }}
# The last good bundle, kept with the ledger for a restart while the bundle
# server is down.
bundle_dir: /var/lib/pare/bundle
bundle_min_delay: {{ .minDelay }}
bundle_max_delay: {{ .maxDelay }}
{{- if .longPoll }}
bundle_long_poll: {{ .longPoll }}
{{- end }}
{{- if .tokenSecret.name }}
bundle_token_file: /etc/pare/bundle-token/token
{{- end }}
{{- if .caConfigMap.name }}
bundle_ca: /etc/pare/bundle-ca/ca.crt
{{- end }}
{{- end }}
{{- end }}
service: {{ .Values.service | quote }}
# The container's --ledger flag names the file per pod, in this directory.
ledger: /var/lib/pare/ledger.jsonl
ledger_max_bytes: {{ .Values.ledger.maxBytes }}
{{- if .Values.ledger.keySecret.name }}
ledger_key: /etc/pare/ledger-key/ledger.key
{{- else }}
# Generated on first start, kept with the ledger.
ledger_key: /var/lib/pare/ledger.key
{{- end }}
{{- if .Values.ledger.witness.existingClaim }}
# The container's --ledger-checkpoint flag names the file per pod.
ledger_checkpoint: /var/lib/pare-witness/ledger.checkpoint
{{- end }}
{{- if .Values.ledger.sink.dsn }}
ledger_sink: {{ .Values.ledger.sink.dsn | quote }}
ledger_retain: {{ .Values.ledger.sink.retain }}
{{- end }}
{{- if $f.genCA }}
# The drop-in CA, generated per pod in a memory volume the app containers
# mount read-only to trust it.
state_dir: /var/run/pare/ca
{{- else }}
# Nothing to generate: the signing key is ledger_key{{ if $f.dropIn }}, the CA is supplied{{ end }}.
state_dir: ""
{{- end }}
drop_in: {{ $f.dropIn }}
{{- if $f.ownCA }}
ca_cert: /etc/pare/ca/ca.crt
ca_key: /etc/pare/ca/ca.key
{{- end }}
{{- if and $f.dropIn .Values.dropIn.passthrough }}
passthrough:
  {{- range .Values.dropIn.passthrough }}
  - {{ . | quote }}
  {{- end }}
{{- end }}
{{- if $f.transparent }}
transparent: 127.0.0.1:{{ int .Values.dropIn.transparent.port }}
{{- end }}
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
{{- else if .Values.consent.dsn }}
consents_dsn: {{ .Values.consent.dsn | quote }}
consent_ttl: {{ .Values.consent.ttl }}
{{- end }}
log_format: {{ .Values.logFormat }}
log_level: {{ .Values.logLevel }}
upstream_timeout: {{ .Values.upstreamTimeout }}
{{- with .Values.companyName }}
company_name: {{ . | quote }}
{{- end }}
{{- with .Values.privacyContact }}
privacy_contact: {{ . | quote }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
pare.envoyBootstrap is what `proxy envoy-bootstrap --node NODE --cluster
FULLNAME --xds 127.0.0.1:XDSPORT --admin 127.0.0.1:ADMINPORT` prints
(charts/pods_test.go compares the two). Envoy's --service-node replaces the
node id with the pod's name. Takes the pare context.
*/}}
{{- define "pare.envoyBootstrap" -}}
admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: {{ int .Values.envoy.adminPort }}
dynamic_resources:
  ads_config:
    api_type: GRPC
    grpc_services:
      - envoy_grpc:
          cluster_name: pare_xds
    set_node_on_first_message_only: true
    transport_api_version: V3
  cds_config:
    ads: {}
    resource_api_version: V3
  lds_config:
    ads: {}
    resource_api_version: V3
node:
  cluster: {{ include "pare.fullname" . }}
  id: {{ include "pare.fullname" . }}
static_resources:
  clusters:
    - connect_timeout: 5s
      load_assignment:
        cluster_name: pare_xds
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address:
                      address: 127.0.0.1
                      port_value: {{ int .Values.envoy.xdsPort }}
      name: pare_xds
      type: STATIC
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {}
{{- end -}}

{{/*
pare.iptablesRules are the iptables-restore rules of the transparent mode's
redirect (IPv4): the app's TCP to dropIn.transparent.ports goes to Pare's
transparent listener, except Pare's own (UID 65532), loopback and the
excluded CIDRs; its UDP to those ports (QUIC, which Pare cannot see) is
refused. Added with --noflush to chains of their own. Takes the pare context.
*/}}
{{- define "pare.iptablesRules" -}}
{{- $t := .Values.dropIn.transparent -}}
*nat
:PARE_REDIRECT - [0:0]
-A OUTPUT -p tcp -j PARE_REDIRECT
-A PARE_REDIRECT -m owner --uid-owner 65532 -j RETURN
-A PARE_REDIRECT -d 127.0.0.0/8 -j RETURN
{{- range $t.iptables.excludeCIDRs }}
-A PARE_REDIRECT -d {{ . }} -j RETURN
{{- end }}
{{- range $t.ports }}
-A PARE_REDIRECT -p tcp --dport {{ int . }} -j REDIRECT --to-ports {{ int $t.port }}
{{- end }}
COMMIT
*filter
:PARE_REFUSE - [0:0]
-A OUTPUT -p udp -j PARE_REFUSE
-A PARE_REFUSE -m owner --uid-owner 65532 -j RETURN
{{- range $t.ports }}
-A PARE_REFUSE -p udp --dport {{ int . }} -j REJECT
{{- end }}
COMMIT
{{- end -}}

{{/*
pare.ip6tablesRules: Pare's transparent listener is IPv4 (127.0.0.1), so
the app's IPv6 connections to those ports are refused rather than let by.
*/}}
{{- define "pare.ip6tablesRules" -}}
{{- $t := .Values.dropIn.transparent -}}
*filter
:PARE_REFUSE - [0:0]
-A OUTPUT -j PARE_REFUSE
-A PARE_REFUSE -m owner --uid-owner 65532 -j RETURN
-A PARE_REFUSE -d ::1/128 -j RETURN
{{- range $t.ports }}
-A PARE_REFUSE -p tcp --dport {{ int . }} -j REJECT --reject-with tcp-reset
-A PARE_REFUSE -p udp --dport {{ int . }} -j REJECT
{{- end }}
COMMIT
{{- end -}}

{{/*
pare.configMapData is the data of the chart's ConfigMap: the sidecar's
config, and the files the Envoy and transparent modes add.
*/}}
{{- define "pare.configMapData" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- $f := $d.f -}}
{{- with $d.c -}}
config.yaml: |
  {{- include "pare.config" . | nindent 2 }}
{{- if $f.envoy }}
envoy.yaml: |
  {{- include "pare.envoyBootstrap" . | nindent 2 }}
{{- end }}
{{- if $f.iptables }}
iptables.rules: |
  {{- include "pare.iptablesRules" . | nindent 2 }}
{{- if .Values.dropIn.transparent.iptables.ipv6 }}
ip6tables.rules: |
  {{- include "pare.ip6tablesRules" . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* pare.securityContext: what every container of Pare's runs with ("restricted"). */}}
{{- define "pare.securityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/*
pare.sidecarContainer is the Pare container — in mode envoy, the three
containers proxy extproc, proxy xds and Envoy. Each is a native sidecar
(Kubernetes 1.29+): put them under initContainers. The kubelet starts them in
order before the app containers, starts the app once Pare's startup probe
passes (a valid policy is loaded), keeps them running beside it, and stops
them after it, so a Job's pod still completes. With the transparent mode's
iptables redirect, two init containers run first and exit.
*/}}
{{- define "pare.sidecarContainer" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- $f := $d.f -}}
{{- with $d.c -}}
{{- include "pare.validate" . -}}
{{- if $f.iptables -}}
{{ include "pare.redirectContainers" . | trim }}
{{ end -}}
- name: pare
  image: {{ include "pare.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  restartPolicy: Always
  # One ledger file (and witness file) per pod: pods sharing a volume must
  # not share a hash chain (the ledger's lock would stop the second one).
  args: [{{ if $f.envoy }}"extproc"{{ else }}"serve"{{ end }}, "--config", "/etc/pare/config/config.yaml", "--ledger", "/var/lib/pare/ledger-$(POD_NAME).jsonl"
    {{- if .Values.ledger.witness.existingClaim }}, "--ledger-checkpoint", "/var/lib/pare-witness/ledger-$(POD_NAME).checkpoint"{{ end }}]
  ports:
    - name: pare-metrics
      containerPort: {{ int .Values.metricsPort }}
      protocol: TCP
  env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    {{- with include "pare.goMemLimitEnv" .Values.resources }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with .Values.postgres }}
    {{- if .passwordSecret.name }}
    # The DSNs carry no password: it would be in the ConfigMap and the
    # process list.
    - name: PGPASSWORD
      valueFrom: {secretKeyRef: {name: {{ .passwordSecret.name | quote }}, key: {{ .passwordSecret.key | quote }}}}
    {{- end }}
    {{- if .passfileSecret.name }}
    - {name: PGPASSFILE, value: /etc/pare/pgpass/pgpass}
    {{- end }}
    {{- if .rootCertConfigMap.name }}
    - {name: PGSSLROOTCERT, value: /etc/pare/pg-ca/ca.crt}
    {{- end }}
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
  securityContext: {{- include "pare.securityContext" 65532 | nindent 4 }}
  resources: {{- toYaml .Values.resources | nindent 4 }}
  volumeMounts:
    - {name: pare-config, mountPath: /etc/pare/config, readOnly: true}
    - {name: pare-ledger, mountPath: /var/lib/pare}
    {{- with include "pare.policyMounts" . }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- if .Values.hmacKeySecret }}
    - {name: pare-hmac, mountPath: /etc/pare/hmac, readOnly: true}
    {{- end }}
    {{- if .Values.consent.configMap }}
    - {name: pare-consents, mountPath: /etc/pare/consents, readOnly: true}
    {{- end }}
    {{- if .Values.ledger.keySecret.name }}
    - {name: pare-ledger-key, mountPath: /etc/pare/ledger-key, readOnly: true}
    {{- end }}
    {{- if .Values.ledger.witness.existingClaim }}
    - {name: pare-witness, mountPath: /var/lib/pare-witness}
    {{- end }}
    {{- if $f.genCA }}
    - {name: pare-ca, mountPath: /var/run/pare/ca}
    {{- end }}
    {{- if $f.ownCA }}
    - {name: pare-ca-key, mountPath: /etc/pare/ca, readOnly: true}
    {{- end }}
    {{- with .Values.policies.bundle }}
    {{- if .url }}
    - {name: pare-bundle-keys, mountPath: /etc/pare/bundle-keys, readOnly: true}
    {{- if .tokenSecret.name }}
    - {name: pare-bundle-token, mountPath: /etc/pare/bundle-token, readOnly: true}
    {{- end }}
    {{- if .caConfigMap.name }}
    - {name: pare-bundle-ca, mountPath: /etc/pare/bundle-ca, readOnly: true}
    {{- end }}
    {{- end }}
    {{- end }}
    {{- if .Values.postgres.passfileSecret.name }}
    - {name: pare-pgpass, mountPath: /etc/pare/pgpass, readOnly: true}
    {{- end }}
    {{- if .Values.postgres.rootCertConfigMap.name }}
    - {name: pare-pg-ca, mountPath: /etc/pare/pg-ca, readOnly: true}
    {{- end }}
{{- if $f.envoy }}
- name: pare-xds
  image: {{ include "pare.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  restartPolicy: Always
  # Envoy's listener, routes and clusters, from the same contracts as
  # extproc enforces, over ADS on loopback. No probe: it serves only gRPC on
  # loopback, which the kubelet cannot reach.
  args: ["xds", "--listen", "127.0.0.1:{{ int .Values.envoy.xdsPort }}", "--egress", "127.0.0.1:{{ int .Values.egressPort }}",
    "--extproc", "127.0.0.1:{{ int .Values.envoy.extprocPort }}", "--ca-file", {{ .Values.envoy.caFile | quote }},
    "--max-body", {{ .Values.maxBody | quote }}, "--message-timeout", {{ .Values.envoy.messageTimeout | quote }},
    "--upstream-timeout", {{ .Values.upstreamTimeout | quote }}, "--log-format", {{ .Values.logFormat | quote }}, "--log-level", {{ .Values.logLevel | quote }}
    {{- if .Values.policies.configMap }}, "--policies", "/etc/pare/policies"{{ end }}]
  {{- with include "pare.goMemLimitEnv" .Values.envoy.xdsResources }}
  env: {{- . | nindent 4 }}
  {{- end }}
  securityContext: {{- include "pare.securityContext" 65532 | nindent 4 }}
  resources: {{- toYaml .Values.envoy.xdsResources | nindent 4 }}
  {{- with include "pare.policyMounts" . }}
  volumeMounts: {{- . | nindent 4 }}
  {{- end }}
- name: envoy
  image: {{ include "pare.envoyImage" .Values.envoy.image | quote }}
  imagePullPolicy: {{ .Values.envoy.image.pullPolicy }}
  restartPolicy: Always
  # The bootstrap is `proxy envoy-bootstrap`'s; --service-node makes the
  # pod's name the node id proxy xds logs. Its admin interface stays on
  # loopback, so it has no probe: until it has its listener from proxy xds
  # the app's calls are refused, nothing leaves.
  args: ["-c", "/etc/pare/config/envoy.yaml", "--service-node", "$(POD_NAME)", "--disable-hot-restart",
    "--concurrency", "{{ int .Values.envoy.concurrency }}", "--log-level", {{ .Values.envoy.logLevel | quote }}]
  env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
  securityContext: {{- include "pare.securityContext" (int .Values.envoy.runAsUser) | nindent 4 }}
  resources: {{- toYaml .Values.envoy.resources | nindent 4 }}
  volumeMounts:
    - {name: pare-config, mountPath: /etc/pare/config, readOnly: true}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
pare.redirectContainers are the init containers of the transparent mode's
iptables redirect: they run once, before Pare, and exit. Takes the pare
context.
*/}}
{{- define "pare.redirectContainers" -}}
{{- $rules := list "iptables" -}}
{{- if .Values.dropIn.transparent.iptables.ipv6 }}{{ $rules = append $rules "ip6tables" }}{{ end -}}
{{- range $rules }}
# Adds the transparent mode's redirect to the pod's network namespace, as
# root with NET_ADMIN and NET_RAW: the pod no longer meets the "restricted"
# (nor the "baseline") Pod Security Standard.
- name: pare-{{ . }}
  image: {{ $.Values.dropIn.transparent.iptables.image | quote }}
  command: ["{{ . }}-restore", "--noflush", "/etc/pare/config/{{ . }}.rules"]
  securityContext:
    runAsNonRoot: false
    runAsUser: 0
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities: {add: [NET_ADMIN, NET_RAW], drop: [ALL]}
    seccompProfile: {type: RuntimeDefault}
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {memory: 64Mi}
  volumeMounts:
    - {name: pare-config, mountPath: /etc/pare/config, readOnly: true}
    - {name: pare-xtables, mountPath: /run}
{{- end }}
{{- end -}}

{{/* pare.policyMounts: the operator's policies and contracts, where a container reads them. Takes the pare context. */}}
{{- define "pare.policyMounts" -}}
{{- if .Values.policies.configMap -}}
- {name: pare-policies, mountPath: /etc/pare/policies, readOnly: true}
{{- end }}
{{- if .Values.policies.contractsConfigMap }}
- {name: pare-contracts, mountPath: /etc/pare/policies/contracts, readOnly: true}
{{- end -}}
{{- end -}}

{{/*
pare.sidecarVolumes are the volumes pare.sidecarContainer and
pare.appVolumeMounts mount. Keys from Secrets are mounted 0400: with the
pod's fsGroup (which UID 65532 needs to read them) the kubelet makes that
0440, owner root, which Pare accepts; without fsGroup they are unreadable
and Pare does not start.
*/}}
{{- define "pare.sidecarVolumes" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- $f := $d.f -}}
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
{{- if .Values.consent.configMap }}
- name: pare-consents
  configMap: {name: {{ .Values.consent.configMap | quote }}}
{{- end }}
{{- with .Values.ledger.keySecret }}
{{- if .name }}
- name: pare-ledger-key
  secret:
    secretName: {{ .name | quote }}
    items: [{key: {{ .key | quote }}, path: ledger.key}]
    defaultMode: 0400
{{- end }}
{{- end }}
{{- if .Values.ledger.witness.existingClaim }}
- name: pare-witness
  persistentVolumeClaim: {claimName: {{ .Values.ledger.witness.existingClaim | quote }}}
{{- end }}
{{- if $f.genCA }}
# The CA this pod generates, in memory: the app containers mount it
# read-only to trust ca.crt. Its key (0600, UID 65532) is useless to them:
# no one but this pod trusts this CA.
- name: pare-ca
  emptyDir: {medium: Memory, sizeLimit: 1Mi}
{{- end }}
{{- with .Values.dropIn.caSecret }}
{{- if $f.ownCA }}
- name: pare-ca-key
  secret:
    secretName: {{ .name | quote }}
    items: [{key: {{ .certKey | quote }}, path: ca.crt}, {key: {{ .keyKey | quote }}, path: ca.key}]
    defaultMode: 0400
# The same Secret's certificate alone, for the app containers to trust.
- name: pare-ca-cert
  secret:
    secretName: {{ .name | quote }}
    items: [{key: {{ .certKey | quote }}, path: ca.crt}]
    defaultMode: 0444
{{- end }}
{{- end }}
{{- if and $f.ownCA .Values.dropIn.trustBundle.configMap }}
- name: pare-trust
  configMap:
    name: {{ .Values.dropIn.trustBundle.configMap | quote }}
    items: [{key: {{ .Values.dropIn.trustBundle.key | quote }}, path: ca-certificates.crt}]
{{- end }}
{{- if $f.iptables }}
- name: pare-xtables
  emptyDir: {medium: Memory, sizeLimit: 1Mi}
{{- end }}
{{- with .Values.policies.bundle }}
{{- if .url }}
- name: pare-bundle-keys
  {{- if .keys.configMap }}
  configMap:
    name: {{ .keys.configMap | quote }}
  {{- else }}
  secret:
    secretName: {{ .keys.secret | quote }}
  {{- end }}
    items:
      {{- range .keys.files }}
      - {key: {{ . | quote }}, path: {{ . | quote }}}
      {{- end }}
{{- if .tokenSecret.name }}
- name: pare-bundle-token
  secret:
    secretName: {{ .tokenSecret.name | quote }}
    items: [{key: {{ .tokenSecret.key | quote }}, path: token}]
    defaultMode: 0400
{{- end }}
{{- if .caConfigMap.name }}
- name: pare-bundle-ca
  configMap:
    name: {{ .caConfigMap.name | quote }}
    items: [{key: {{ .caConfigMap.key | quote }}, path: ca.crt}]
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.postgres }}
{{- if .passfileSecret.name }}
- name: pare-pgpass
  secret:
    secretName: {{ .passfileSecret.name | quote }}
    items: [{key: {{ .passfileSecret.key | quote }}, path: pgpass}]
    defaultMode: 0400
{{- end }}
{{- if .rootCertConfigMap.name }}
- name: pare-pg-ca
  configMap:
    name: {{ .rootCertConfigMap.name | quote }}
    items: [{key: {{ .rootCertConfigMap.key | quote }}, path: ca.crt}]
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
pare.appEnv points an app container at the sidecar: HTTP_PROXY for the
vendors' http:// URLs, HTTPS_PROXY for their https:// URLs (drop-in mode;
without it, or in mode envoy, Pare refuses CONNECT and the call fails rather
than leave unfiltered), NO_PROXY for the cluster-internal names and CIDRs
of noProxy — upper and lower case, since HTTP clients differ in which they
read — and, in drop-in mode, the variables of dropIn.trustEnv pointing at
Pare's CA.
*/}}
{{- define "pare.appEnv" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- $f := $d.f -}}
{{- with $d.c -}}
{{- $proxy := printf "http://127.0.0.1:%d" (int .Values.egressPort) -}}
{{- $noProxy := join "," .Values.noProxy -}}
- {name: HTTP_PROXY, value: {{ $proxy | quote }}}
- {name: http_proxy, value: {{ $proxy | quote }}}
- {name: HTTPS_PROXY, value: {{ $proxy | quote }}}
- {name: https_proxy, value: {{ $proxy | quote }}}
- {name: NO_PROXY, value: {{ $noProxy | quote }}}
- {name: no_proxy, value: {{ $noProxy | quote }}}
{{- if $f.dropIn }}
{{- $bundle := "/var/run/pare/ca/ca.crt" -}}
{{- if .Values.dropIn.trustBundle.configMap }}{{ $bundle = "/var/run/pare/trust/ca-certificates.crt" }}{{ end }}
{{- $files := dict "SSL_CERT_FILE" $bundle "REQUESTS_CA_BUNDLE" $bundle "NODE_EXTRA_CA_CERTS" "/var/run/pare/ca/ca.crt" -}}
{{- range .Values.dropIn.trustEnv }}
- {name: {{ . }}, value: {{ get $files . | quote }}}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
pare.appVolumeMounts are the app container's mounts of what pare.appEnv
names: Pare's CA certificate at /var/run/pare/ca (and the trust bundle at
/var/run/pare/trust), read-only. An empty list when there is nothing to
mount, so `volumeMounts: {{ include ... }}` is always valid.
*/}}
{{- define "pare.appVolumeMounts" -}}
{{- $d := dict -}}{{- include "pare.context" (dict "ctx" . "out" $d) -}}
{{- $f := $d.f -}}
{{- with $d.c -}}
{{- if $f.genCA -}}
- {name: pare-ca, mountPath: /var/run/pare/ca, readOnly: true}
{{- else if $f.ownCA -}}
- {name: pare-ca-cert, mountPath: /var/run/pare/ca, readOnly: true}
{{- if .Values.dropIn.trustBundle.configMap }}
- {name: pare-trust, mountPath: /var/run/pare/trust, readOnly: true}
{{- end }}
{{- else -}}
[]
{{- end -}}
{{- end -}}
{{- end -}}
