{{/*
Names and labels (prometheus-community conventions).
*/}}
{{- define "openvpn-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "openvpn-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "openvpn-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "openvpn-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "openvpn-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "openvpn-exporter.labels" -}}
helm.sh/chart: {{ include "openvpn-exporter.chart" . }}
{{ include "openvpn-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: openvpn-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the pod template: the selector labels and podLabels only. Nothing that changes with the chart
version, so a chart upgrade that changes nothing in the pod does not restart OpenVPN (strategy Recreate).
*/}}
{{- define "openvpn-exporter.podLabels" -}}
{{ include "openvpn-exporter.selectorLabels" . }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "openvpn-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "openvpn-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "openvpn-exporter.configMapName" -}}
{{- printf "%s-config" (include "openvpn-exporter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "openvpn-exporter.metricsServiceName" -}}
{{- printf "%s-metrics" (include "openvpn-exporter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "openvpn-exporter.webConfigSecretName" -}}
{{- printf "%s-web-config" (include "openvpn-exporter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
This chart's appVersion, the default tag of both images. The sidecar templates also render inside other
charts, whose .Chart is theirs: there it is read from the dependency (.Subcharts, by chart name or by the
"subchart" key of the call, for an alias), so there is one version source, Chart.yaml.
Call with (dict "top" $ ["subchart" "<alias>"]).
*/}}
{{- define "openvpn-exporter.appVersion" -}}
{{- $chart := .top.Chart }}
{{- if ne $chart.Name "openvpn-exporter" }}
{{- $name := default "openvpn-exporter" .subchart }}
{{- $sub := index (default dict .top.Subcharts) $name }}
{{- if not $sub }}
{{- fail (printf "openvpn-exporter image tag: chart %s has no dependency %q; set exporter.image.tag or pass \"subchart\" (the dependency's alias) to the sidecar templates" $chart.Name $name) }}
{{- end }}
{{- $chart = $sub.Chart }}
{{- end }}
{{- $chart.AppVersion }}
{{- end }}

{{/*
"registry/repository:tag" or "registry/repository@digest" from an image block. global.imageRegistry, when
set, replaces every image's registry (mirrors); an empty registry leaves the repository as it is. The tag
defaults to this chart's appVersion.
Call with (dict "image" .Values.exporter.image "top" $ ["subchart" "<alias>"]).
*/}}
{{- define "openvpn-exporter.image" -}}
{{- $global := default dict .top.Values.global }}
{{- $registry := default .image.registry $global.imageRegistry }}
{{- $repository := .image.repository }}
{{- if $registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default (include "openvpn-exporter.appVersion" (dict "top" .top "subchart" .subchart)) (.image.tag | toString)) }}
{{- end }}
{{- end }}

{{/*
=====================================================================================================
Reusable sidecar templates. Another chart that already runs OpenVPN can add the exporter to its pod:
declare this chart as a dependency with `openvpn-exporter: {enabled: false}` and include these, passing
  (dict "top" $ "values" (index $.Values "openvpn-exporter") "configMapName" "<ConfigMap with exporter.yaml>")
"values" is this chart's values tree (in this chart: .Values), so every default applies to the consumer.
See examples/consumer-chart.
=====================================================================================================
*/}}

{{/* Enabled protocols, as a comma-separated list ("udp,tcp"). Call with the values tree. */}}
{{- define "openvpn-exporter.protocols" -}}
{{- $p := list }}
{{- if .openvpn.udp.enabled }}{{ $p = append $p "udp" }}{{ end }}
{{- if .openvpn.tcp.enabled }}{{ $p = append $p "tcp" }}{{ end }}
{{- join "," $p }}
{{- end }}

{{/* Status file path of one protocol. Call with (dict "values" $values "proto" "udp"). */}}
{{- define "openvpn-exporter.statusFile" -}}
{{- printf "%s/%s.status" (trimSuffix "/" .values.sharedVolume.mountPath) .proto }}
{{- end }}

{{/* Management socket path of one protocol. Call with (dict "values" $values "proto" "udp"). */}}
{{- define "openvpn-exporter.managementSocket" -}}
{{- printf "%s/%s-management.sock" (trimSuffix "/" .values.sharedVolume.mountPath) .proto }}
{{- end }}

{{/*
OpenVPN arguments that make it write what the exporter reads: the status file in the shared volume,
status-version 3, the refresh interval, and (optionally) the management socket. As YAML list items.
Call with (dict "values" $values "proto" "udp").
*/}}
{{- define "openvpn-exporter.openvpn.statusArgs" -}}
- --status
- {{ include "openvpn-exporter.statusFile" . | quote }}
- {{ .values.openvpn.statusInterval | quote }}
- --status-version
- "3"
{{- if .values.openvpn.management.enabled }}
- --management
- {{ include "openvpn-exporter.managementSocket" . | quote }}
- unix
{{- with .values.openvpn.management.clientUser }}
- --management-client-user
- {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The mount of the shared volume for an OpenVPN container (read-write). Call with the values tree. */}}
{{- define "openvpn-exporter.openvpn.statusVolumeMount" -}}
- name: {{ .sharedVolume.name }}
  mountPath: {{ .sharedVolume.mountPath }}
{{- end }}

{{/* exporter.yaml. Call with the values tree. */}}
{{- define "openvpn-exporter.exporterConfig" -}}
{{- $values := . }}
{{- $cfg := dict "server_name" .exporter.config.serverName }}
{{- if ne (toString .exporter.config.staleAfter) "" }}
{{- $_ := set $cfg "stale_after" .exporter.config.staleAfter }}
{{- end }}
{{- if .openvpn.management.enabled }}
{{- $sources := list }}
{{- range $proto := splitList "," (include "openvpn-exporter.protocols" $values) }}
{{- $sources = append $sources (dict "name" $proto "management" (include "openvpn-exporter.managementSocket" (dict "values" $values "proto" $proto)) "protocol" $proto) }}
{{- end }}
{{- $_ := set $cfg "sources" $sources }}
{{- else }}
{{- if .openvpn.udp.enabled }}
{{- $_ := set $cfg "ovpnudpstatus" (include "openvpn-exporter.statusFile" (dict "values" $values "proto" "udp")) }}
{{- end }}
{{- if .openvpn.tcp.enabled }}
{{- $_ := set $cfg "ovpntcpstatus" (include "openvpn-exporter.statusFile" (dict "values" $values "proto" "tcp")) }}
{{- end }}
{{- end }}
{{- toYaml (merge (deepCopy .exporter.config.extra) $cfg) }}
{{- end }}

{{/* Whether a web config file is passed at all. Call with the values tree. */}}
{{- define "openvpn-exporter.webConfigEnabled" -}}
{{- if or .exporter.webConfig.existingSecret .exporter.webConfig.tls.enabled .exporter.webConfig.basicAuthUsers }}true{{ end }}
{{- end }}

{{/* The web config file (exporter-toolkit format) rendered from values. Call with the values tree. */}}
{{- define "openvpn-exporter.webConfig" -}}
{{- $w := .exporter.webConfig }}
{{- $cfg := dict }}
{{- if $w.tls.enabled }}
{{- $dir := trimSuffix "/" $w.tls.mountPath }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) "min_version" $w.tls.minVersion }}
{{- with $w.tls.clientAuthType }}
{{- $_ := set $tls "client_auth_type" . }}
{{- if has . (list "RequireAnyClientCert" "VerifyClientCertIfGiven" "RequireAndVerifyClientCert") }}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" $dir) }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "tls_server_config" $tls }}
{{- end }}
{{- with $w.basicAuthUsers }}
{{- $_ := set $cfg "basic_auth_users" . }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Refuse a web config that would render an invalid pod: TLS without its Secret, or a rendered web config
with no Secret to hold it (another chart must include openvpn-exporter.sidecar.webConfigSecret and pass
its name as "webConfigSecretName", or set existingSecret). Call with the sidecar's dict.
*/}}
{{- define "openvpn-exporter.sidecar.checkWebConfig" -}}
{{- $w := .values.exporter.webConfig }}
{{- if and $w.tls.enabled (not $w.tls.secretName) (not $w.existingSecret) }}
{{- fail "exporter.webConfig.tls.enabled needs exporter.webConfig.tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if not (or $w.existingSecret .webConfigSecretName) }}
{{- fail "exporter.webConfig: set exporter.webConfig.existingSecret, or include openvpn-exporter.sidecar.webConfigSecret and pass its name as \"webConfigSecretName\" to the sidecar templates" }}
{{- end }}
{{- end }}

{{/*
The Secret holding the web config rendered from values (TLS settings, basic auth hashes), for this chart
and for another chart that includes the sidecar. Renders nothing when there is no web config or an
existingSecret holds it. Call with (dict "top" $ "values" $values "webConfigSecretName" "...").
*/}}
{{- define "openvpn-exporter.sidecar.webConfigSecret" -}}
{{- $w := .values.exporter.webConfig }}
{{- if and (include "openvpn-exporter.webConfigEnabled" .values) (not $w.existingSecret) }}
{{- include "openvpn-exporter.sidecar.checkWebConfig" . }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .webConfigSecretName }}
  namespace: {{ default .top.Release.Namespace .namespace }}
  {{- with .labels }}
  labels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
type: Opaque
stringData:
  {{ $w.key }}: |
    {{- include "openvpn-exporter.webConfig" .values | nindent 4 }}
{{- end }}
{{- end }}

{{/* The path the ServiceMonitor scrapes (/prom by default). Call with the values tree. */}}
{{- define "openvpn-exporter.scrapePath" -}}
{{- default .exporter.telemetryPath .serviceMonitor.path }}
{{- end }}

{{/* http or https for probes and the helm test. Call with the values tree. */}}
{{- define "openvpn-exporter.scheme" -}}
{{- if .exporter.webConfig.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/*
The exporter container, as one YAML list item. In native sidecar mode it carries restartPolicy: Always and
belongs in initContainers (openvpn-exporter.sidecar.initContainers puts it there).
Call with (dict "top" $ "values" $values "configMapName" "...").
*/}}
{{- define "openvpn-exporter.sidecar.container" -}}
{{- $v := .values }}
{{- $e := $v.exporter }}
{{- $scheme := upper (include "openvpn-exporter.scheme" $v) }}
- name: openvpn-exporter
  image: {{ include "openvpn-exporter.image" (dict "image" $e.image "top" .top "subchart" .subchart) | quote }}
  imagePullPolicy: {{ $e.image.pullPolicy }}
  {{- if $e.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  command:
    - openvpn-exporter
  args:
    - --web.listen-address=:{{ $e.port }}
    - --web.telemetry-path={{ $e.telemetryPath }}
    - --config.file=/etc/openvpn-exporter/exporter.yaml
    - --log.level={{ $e.logLevel }}
    {{- if include "openvpn-exporter.webConfigEnabled" $v }}
    - --web.config.file={{ trimSuffix "/" $e.webConfig.mountPath }}/{{ $e.webConfig.key }}
    {{- end }}
    {{- range $e.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    - name: metrics
      containerPort: {{ $e.port }}
      protocol: TCP
  {{- with $e.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $e.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $e.startupProbe.enabled }}
  startupProbe:
    httpGet:
      path: /-/healthy
      port: metrics
      scheme: {{ $scheme }}
    {{- toYaml (omit $e.startupProbe "enabled") | nindent 4 }}
  {{- end }}
  {{- if $e.livenessProbe.enabled }}
  livenessProbe:
    httpGet:
      path: /-/healthy
      port: metrics
      scheme: {{ $scheme }}
    {{- toYaml (omit $e.livenessProbe "enabled") | nindent 4 }}
  {{- end }}
  {{- if $e.readinessProbe.enabled }}
  readinessProbe:
    httpGet:
      path: /-/ready
      port: metrics
      scheme: {{ $scheme }}
    {{- toYaml (omit $e.readinessProbe "enabled") | nindent 4 }}
  {{- end }}
  {{- with $e.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $e.securityContext | nindent 4 }}
  volumeMounts:
    - name: {{ $v.sharedVolume.name }}
      mountPath: {{ $v.sharedVolume.mountPath }}
      {{- /* Connecting to the management socket is a write: keep the volume writable in that mode. */}}
      readOnly: {{ not $v.openvpn.management.enabled }}
    - name: openvpn-exporter-config
      mountPath: /etc/openvpn-exporter
      readOnly: true
    {{- if include "openvpn-exporter.webConfigEnabled" $v }}
    - name: openvpn-exporter-web-config
      mountPath: {{ $e.webConfig.mountPath }}
      readOnly: true
    {{- end }}
    {{- if and $e.webConfig.tls.enabled $e.webConfig.tls.secretName }}
    - name: openvpn-exporter-tls
      mountPath: {{ $e.webConfig.tls.mountPath }}
      readOnly: true
    {{- end }}
    {{- with $e.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The pod's fsGroup, through which OpenVPN and the exporter share files: this chart's podSecurityContext,
or in another chart the "fsGroup" key of the call. Call with (dict "top" $ "values" $values ["fsGroup" N]).
*/}}
{{- define "openvpn-exporter.fsGroup" -}}
{{- if hasKey . "fsGroup" }}{{ with .fsGroup }}{{ . }}{{ end }}
{{- else }}{{ with .values.podSecurityContext }}{{ with .fsGroup }}{{ . }}{{ end }}{{ end }}
{{- end }}
{{- end }}

{{/*
Effective capabilities of a container securityContext, as the container runtimes (containerd, CRI-O,
Docker) compute them: their default set, minus drop (ALL empties it), plus add; names without "CAP_".
A privileged container has them all ("ALL"). As a comma-separated list.
*/}}
{{- define "openvpn-exporter.effectiveCapabilities" -}}
{{- $sc := default dict . }}
{{- $c := default dict $sc.capabilities }}
{{- if or $sc.privileged (has "ALL" (default list $c.add)) }}ALL{{ else }}
{{- $caps := list "AUDIT_WRITE" "CHOWN" "DAC_OVERRIDE" "FOWNER" "FSETID" "KILL" "MKNOD" "NET_BIND_SERVICE" "NET_RAW" "SETFCAP" "SETGID" "SETPCAP" "SETUID" "SYS_CHROOT" }}
{{- range default list $c.drop }}
{{- $name := upper . | trimPrefix "CAP_" }}
{{- if eq $name "ALL" }}{{ $caps = list }}{{ else }}{{ $caps = without $caps $name }}{{ end }}
{{- end }}
{{- range default list $c.add }}
{{- $caps = append $caps (upper . | trimPrefix "CAP_") }}
{{- end }}
{{- join "," (uniq $caps) }}
{{- end }}
{{- end }}

{{/*
The init container that pre-creates the status files (mode exporter.prepare.fileMode, group fsGroup) in
the shared volume, so OpenVPN (root, umask 022 would make them 0600) writes into files the non-root
exporter owns, through the group.
Call with (dict "top" $ "values" $values).
*/}}
{{- define "openvpn-exporter.sidecar.prepareContainer" -}}
{{- $v := .values }}
{{- $e := $v.exporter }}
- name: openvpn-exporter-prepare
  image: {{ include "openvpn-exporter.image" (dict "image" $e.image "top" .top "subchart" .subchart) | quote }}
  imagePullPolicy: {{ $e.image.pullPolicy }}
  command:
    - openvpn-exporter
  args:
    - prepare
    - --mode={{ $e.prepare.fileMode }}
    {{- with include "openvpn-exporter.fsGroup" . }}
    - --group={{ . }}
    {{- end }}
    {{- range $proto := splitList "," (include "openvpn-exporter.protocols" $v) }}
    - {{ include "openvpn-exporter.statusFile" (dict "values" $v "proto" $proto) }}
    {{- end }}
  {{- with $e.prepare.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $e.securityContext | nindent 4 }}
  volumeMounts:
    - name: {{ $v.sharedVolume.name }}
      mountPath: {{ $v.sharedVolume.mountPath }}
{{- end }}

{{/* Everything the sidecar adds to initContainers. Call with (dict "top" $ "values" $values "configMapName" "..."). */}}
{{- define "openvpn-exporter.sidecar.initContainers" -}}
{{ include "openvpn-exporter.sidecar.prepareContainer" . }}
{{- if .values.exporter.nativeSidecar }}
{{ include "openvpn-exporter.sidecar.container" . }}
{{- end }}
{{- end }}

{{/* Everything the sidecar adds to containers (nothing in native sidecar mode). Same arguments. */}}
{{- define "openvpn-exporter.sidecar.containers" -}}
{{- if not .values.exporter.nativeSidecar }}
{{ include "openvpn-exporter.sidecar.container" . }}
{{- end }}
{{- end }}

{{/*
The volumes the sidecar needs: the shared emptyDir, the exporter.yaml ConfigMap (whole directory, no
subPath, so updates reach the pod), and the web config / TLS Secrets when enabled.
Call with (dict "top" $ "values" $values "configMapName" "..." "webConfigSecretName" "...").
*/}}
{{- define "openvpn-exporter.sidecar.volumes" -}}
{{- $v := .values }}
{{- $e := $v.exporter }}
- name: {{ $v.sharedVolume.name }}
  emptyDir:
    {{- with $v.sharedVolume.medium }}
    medium: {{ . }}
    {{- end }}
    {{- with $v.sharedVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
- name: openvpn-exporter-config
  configMap:
    name: {{ .configMapName }}
{{- if include "openvpn-exporter.webConfigEnabled" $v }}
{{- include "openvpn-exporter.sidecar.checkWebConfig" . }}
- name: openvpn-exporter-web-config
  secret:
    secretName: {{ default .webConfigSecretName $e.webConfig.existingSecret }}
{{- end }}
{{- if and $e.webConfig.tls.enabled $e.webConfig.tls.secretName }}
- name: openvpn-exporter-tls
  secret:
    secretName: {{ $e.webConfig.tls.secretName }}
{{- end }}
{{- end }}

{{/*
=====================================================================================================
Monitoring: the ServiceMonitor and the PodMonitor share these (the fields of node-exporter's
prometheus.monitor). Call with (dict "top" $ "monitor" .Values.serviceMonitor).
=====================================================================================================
*/}}

{{/* The release namespace, or namespaceOverride. */}}
{{- define "openvpn-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* Spec fields before the selector: job label, target labels, limits, metadata, namespaces. */}}
{{- define "openvpn-exporter.monitorSpec" -}}
{{- $m := .monitor }}
{{- with $m.jobLabel }}
jobLabel: {{ . }}
{{- end }}
{{- with $m.podTargetLabels }}
podTargetLabels:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- range $key := list "sampleLimit" "targetLimit" "labelLimit" "labelNameLengthLimit" "labelValueLengthLimit" }}
{{- with index $m $key }}
{{ $key }}: {{ . }}
{{- end }}
{{- end }}
{{- with $m.attachMetadata }}
attachMetadata:
  {{- toYaml . | nindent 2 }}
{{- end }}
namespaceSelector:
  {{- with $m.namespaceSelector }}
  {{- toYaml . | nindent 2 }}
  {{- else }}
  matchNames:
    - {{ include "openvpn-exporter.namespace" .top }}
  {{- end }}
{{- end }}

{{/* Endpoint fields after the port: path, scheme, timing, auth, relabelling. */}}
{{- define "openvpn-exporter.monitorEndpoint" -}}
{{- $m := .monitor }}
{{- $values := .top.Values }}
path: {{ default $values.exporter.telemetryPath $m.path }}
scheme: {{ default (include "openvpn-exporter.scheme" $values) $m.scheme }}
{{- with $m.interval }}
interval: {{ . }}
{{- end }}
{{- with $m.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
honorLabels: {{ $m.honorLabels }}
{{- with $m.proxyUrl }}
proxyUrl: {{ . }}
{{- end }}
{{- range $key := list "tlsConfig" "basicAuth" "authorization" "relabelings" "metricRelabelings" }}
{{- with index $m $key }}
{{ $key }}:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}
