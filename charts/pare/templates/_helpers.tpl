{{- define "pare.fullname" -}}
{{- printf "%s-pare" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pare.labels" -}}
app.kubernetes.io/name: pare
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
pare.sidecarContainer is the Pare container to put beside an app container.
The app reaches it at http://127.0.0.1:{{ .Values.egressPort }} (HTTP_PROXY).
*/}}
{{- define "pare.sidecarContainer" -}}
- name: pare
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve", "--config", "/etc/pare/config/config.yaml"]
  ports:
    - name: pare-admin
      containerPort: {{ .Values.adminPort }}
  env:
    # Let the Go runtime collect before the container limit is reached.
    - name: GOMEMLIMIT
      valueFrom:
        resourceFieldRef:
          resource: limits.memory
          divisor: "1"
  readinessProbe:
    httpGet: {path: /readyz, port: pare-admin}
    periodSeconds: 5
  livenessProbe:
    httpGet: {path: /healthz, port: pare-admin}
    periodSeconds: 10
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities: {drop: [ALL]}
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
    {{- if .Values.consent.configMap }}
    - {name: pare-consents, mountPath: /etc/pare/consents, readOnly: true}
    {{- end }}
{{- end -}}

{{/* pare.sidecarVolumes are the volumes pare.sidecarContainer mounts. */}}
{{- define "pare.sidecarVolumes" -}}
- name: pare-config
  configMap: {name: {{ include "pare.fullname" . }}}
- name: pare-ledger
  {{- if .Values.ledger.existingClaim }}
  persistentVolumeClaim: {claimName: {{ .Values.ledger.existingClaim }}}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if .Values.policies.configMap }}
- name: pare-policies
  configMap: {name: {{ .Values.policies.configMap }}}
{{- end }}
{{- if .Values.policies.contractsConfigMap }}
- name: pare-contracts
  configMap: {name: {{ .Values.policies.contractsConfigMap }}}
{{- end }}
{{- if .Values.hmacKeySecret }}
- name: pare-hmac
  secret: {secretName: {{ .Values.hmacKeySecret }}}
{{- end }}
{{- if .Values.consent.configMap }}
- name: pare-consents
  configMap: {name: {{ .Values.consent.configMap }}}
{{- end }}
{{- end -}}

{{/* pare.appEnv points an app container at the sidecar. */}}
{{- define "pare.appEnv" -}}
- {name: HTTP_PROXY, value: "http://127.0.0.1:{{ .Values.egressPort }}"}
- {name: http_proxy, value: "http://127.0.0.1:{{ .Values.egressPort }}"}
{{- end -}}
