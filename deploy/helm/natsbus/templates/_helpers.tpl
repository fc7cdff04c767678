{{/*
Names, labels and the values every worker group shares.
*/}}

{{- define "natsbus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "natsbus.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "natsbus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "natsbus.labels" -}}
helm.sh/chart: {{ include "natsbus.chart" . }}
app.kubernetes.io/name: {{ include "natsbus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: natsbus
{{- end -}}

{{/* Selector labels of every worker pod of the release. */}}
{{- define "natsbus.workerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "natsbus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "natsbus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "natsbus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Recursive merge of two maps; `over` wins. Unlike sprig's merge/mergeOverwrite it lets a group
set false, 0 or "" over a default. Returns JSON.
*/}}
{{- define "natsbus.deepMerge" -}}
{{- $base := deepCopy .base -}}
{{- range $key, $value := .over -}}
{{- if and (kindIs "map" $value) (kindIs "map" (get $base $key)) -}}
{{- $_ := set $base $key (include "natsbus.deepMerge" (dict "base" (get $base $key) "over" $value) | fromJson) -}}
{{- else -}}
{{- $_ := set $base $key $value -}}
{{- end -}}
{{- end -}}
{{- toJson $base -}}
{{- end -}}

{{/*
The worker groups, each merged over workerDefaults and completed with the names the templates
need, as JSON: {"groups": [...]}. Fails on a duplicate or too long name.
*/}}
{{- define "natsbus.workerGroups" -}}
{{- $root := . -}}
{{- $fullname := include "natsbus.fullname" . -}}
{{- $seen := dict -}}
{{- $groups := list -}}
{{- range $index, $group := .Values.workers -}}
{{- if hasKey $seen $group.name -}}
{{- fail (printf "workers[%d]: the worker group name %q is used twice; group names must be unique" $index $group.name) -}}
{{- end -}}
{{- $_ := set $seen $group.name true -}}
{{- $w := include "natsbus.deepMerge" (dict "base" $root.Values.workerDefaults "over" $group) | fromJson -}}
{{- $deployment := printf "%s-%s" $fullname $group.name -}}
{{- if gt (len $deployment) 63 -}}
{{- fail (printf "workers[%d]: %q (release full name + group name) is longer than 63 characters; shorten the group name or set fullnameOverride" $index $deployment) -}}
{{- end -}}
{{- $_ := set $w "deploymentName" $deployment -}}
{{- $_ := set $w "workerName" (default $group.name $group.workerName) -}}
{{- $_ := set $w "channel" (default $root.Values.channel $group.channel) -}}
{{- $_ := set $w "jobConsumer" (include "natsbus.jobConsumer" (dict "channel" $w.channel "worker" $w.workerName)) -}}
{{- $groups = append $groups $w -}}
{{- end -}}
{{- toJson (dict "groups" $groups) -}}
{{- end -}}

{{/*
The durable JetStream consumer the workers of one group share: the same name as
natsbus.bus.nats.layout.SubjectLayout(channel).job_consumer(worker), for the default subject
prefix "natsbus" (which `natsbus run` uses):

    digest   = sha256("natsbus\0<channel>\0<worker>")
    readable = "<channel>_<worker>" with every character that is not a letter, a digit, "-" or
               "_" replaced by "_", cut to 48 characters
    name     = "jobs_<readable>_<first 12 hex digits of digest>"

tests/deploy/test_deploy_chart.py checks this against the Python function for tricky names.
*/}}
{{- define "natsbus.jobConsumer" -}}
{{- $digest := printf "natsbus\x00%s\x00%s" .channel .worker | sha256sum -}}
{{- $readable := regexReplaceAll "[^\\p{L}\\p{N}_-]" (printf "%s_%s" .channel .worker) "_" -}}
{{- $readable = regexFind "(?s)^.{0,48}" $readable -}}
{{- printf "jobs_%s_%s" $readable (trunc 12 $digest) -}}
{{- end -}}

{{/* The stream of job requests, whose consumers KEDA watches: SubjectLayout.request_stream
(JetStreamOptions.stream + "_REQUESTS"), which `natsbus run` leaves at its default. */}}
{{- define "natsbus.jobStream" -}}NATSBUS_JOBS_REQUESTS{{- end -}}

{{/* The NATS chart's full name, computed as that chart does. */}}
{{- define "natsbus.natsFullname" -}}
{{- $nats := .Values.nats -}}
{{- if $nats.fullnameOverride -}}
{{- $nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "nats" $nats.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "natsbus.natsNamespace" -}}
{{- default .Release.Namespace .Values.nats.namespaceOverride -}}
{{- end -}}

{{/*
Where the bundled NATS chart (nats 1.3.x) puts its servers, derived from the values it renders
with exactly as that chart derives them, as JSON:

    service   the client Service: nats.service.name, default <nats fullname>; rendered only
              with nats.service.enabled, and carries the client port only with
              nats.service.ports.nats.enabled
    headless  the headless Service: nats.headlessService.name, default <nats fullname>-headless;
              always rendered, with every port the servers listen on
    client    what the workers dial: {host, port, via}: the client Service on its port
              (nats.service.ports.nats.port, default nats.config.nats.port), or the headless
              Service on the servers' own port when the client Service has no client port
    serverPort  the port the servers listen on (nats.config.nats.port, default 4222): the pods'
              port, which a NetworkPolicy matches
    monitor   {enabled, port, https}: nats.config.monitor.enabled (default true), .port (8222),
              .tls.enabled (false), served on the headless Service for KEDA

The defaults are the NATS chart's own, so the result is the same whether the chart's values.yaml
is merged in (the real chart in charts/) or not (the stand-in of the tests).
*/}}
{{- define "natsbus.bundledNats" -}}
{{- $nats := .Values.nats -}}
{{- $fullname := include "natsbus.natsFullname" . -}}
{{- $names := dict -}}
{{- range $key, $default := dict "service" $fullname "headlessService" (printf "%s-headless" $fullname) -}}
{{- $name := dig $key "name" "" $nats | default $default -}}
{{- if not (kindIs "string" $name) -}}
{{- fail (printf "nats.%s.name: give a plain Service name; the workers' NATS address is derived from it, and a $tplYaml there cannot be followed" $key) -}}
{{- end -}}
{{- $_ := set $names $key $name -}}
{{- end -}}
{{- $serverPort := dig "config" "nats" "port" 4222 $nats | default 4222 | int -}}
{{- $servicePort := dig "service" "ports" "nats" "port" $serverPort $nats | default $serverPort | int -}}
{{- $serviceEnabled := dig "service" "enabled" true $nats -}}
{{- $servicePortEnabled := dig "service" "ports" "nats" "enabled" true $nats -}}
{{- $client := dict "host" $names.service "port" $servicePort "via" "service" -}}
{{- if not (and $serviceEnabled $servicePortEnabled) -}}
{{- $client = dict "host" $names.headlessService "port" $serverPort "via" "headless" -}}
{{- end -}}
{{- if not $client.host -}}
{{- fail "nats: no Service of the bundled NATS can be dialled: keep nats.service.enabled or name the headless Service (nats.headlessService.name)" -}}
{{- end -}}
{{- $monitor := dict "enabled" (dig "config" "monitor" "enabled" true $nats) "port" (dig "config" "monitor" "port" 8222 $nats | default 8222 | int) "https" (dig "config" "monitor" "tls" "enabled" false $nats) -}}
{{- toJson (dict "service" $names.service "headless" $names.headlessService "client" $client "serverPort" $serverPort "monitor" $monitor) -}}
{{- end -}}

{{/* The NATS URLs the workers connect to, as JSON: {"urls": [...]}. */}}
{{- define "natsbus.natsUrls" -}}
{{- if .Values.nats.enabled -}}
{{- $scheme := ternary "tls" "nats" .Values.natsTls.enabled -}}
{{- $client := (include "natsbus.bundledNats" . | fromJson).client -}}
{{- $url := printf "%s://%s.%s.svc:%d" $scheme $client.host (include "natsbus.natsNamespace" .) (int $client.port) -}}
{{- toJson (dict "urls" (list $url)) -}}
{{- else -}}
{{- if not .Values.externalNats.urls -}}
{{- fail "externalNats.urls: give at least one NATS server URL when nats.enabled is false (e.g. --set externalNats.urls[0]=nats://nats.messaging:4222)" -}}
{{- end -}}
{{- toJson (dict "urls" .Values.externalNats.urls) -}}
{{- end -}}
{{- end -}}

{{/*
The ports the workers' NetworkPolicy lets them reach NATS on, as JSON: {"ports": [...]}. A
NetworkPolicy matches the port on the destination pod, after a Service has translated its own
port, so with the bundled NATS this is the servers' port (nats.config.nats.port), whatever port
the client Service shows. With an external NATS: networkPolicy.natsPort, or else the port of
each of externalNats.urls (4222 when a URL has none; 80 and 443 for ws:// and wss://).
*/}}
{{- define "natsbus.natsEgressPorts" -}}
{{- $given := .Values.networkPolicy.natsPort -}}
{{- $ports := list -}}
{{- if .Values.nats.enabled -}}
{{- $serverPort := (include "natsbus.bundledNats" . | fromJson).serverPort | int -}}
{{- if and (not (kindIs "invalid" $given)) (ne (int $given) $serverPort) -}}
{{- fail (printf "networkPolicy.natsPort (%d) is not the port the bundled NATS servers listen on (nats.config.nats.port: %d): leave networkPolicy.natsPort unset, it follows that port" (int $given) $serverPort) -}}
{{- end -}}
{{- $ports = list $serverPort -}}
{{- else if not (kindIs "invalid" $given) -}}
{{- $ports = list (int $given) -}}
{{- else -}}
{{- range $url := .Values.externalNats.urls -}}
{{- $scheme := regexFind "^[a-z]+" $url -}}
{{- $authority := regexReplaceAll "^[a-z]+://([^/]*@)?([^/]*).*$" $url "${2}" -}}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" $authority) -}}
{{- if not $port -}}
{{- $port = get (dict "nats" "4222" "tls" "4222" "ws" "80" "wss" "443") $scheme | default "4222" -}}
{{- end -}}
{{- $ports = append $ports (int $port) -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "ports" (uniq $ports)) -}}
{{- end -}}

{{/* host:port of the NATS monitoring endpoint, for KEDA. */}}
{{- define "natsbus.natsMonitoringEndpoint" -}}
{{- if .Values.nats.enabled -}}
{{- $bundled := include "natsbus.bundledNats" . | fromJson -}}
{{- if not $bundled.monitor.enabled -}}
{{- fail "KEDA autoscaling reads the NATS monitoring port: keep nats.config.monitor.enabled true" -}}
{{- end -}}
{{- printf "%s.%s.svc.%s:%d" $bundled.headless (include "natsbus.natsNamespace" .) .Values.clusterDomain (int $bundled.monitor.port) -}}
{{- else -}}
{{- required "externalNats.monitoringEndpoint: KEDA autoscaling needs the host:port of the NATS monitoring endpoint when nats.enabled is false" .Values.externalNats.monitoringEndpoint -}}
{{- end -}}
{{- end -}}

{{/*
Whether KEDA reads the monitoring endpoint over HTTPS, for one group's autoscaling values:
autoscaling.useHttps, or when unset, what the bundled NATS serves (nats.config.monitor.tls) and
false for an external NATS. Fails when set against what the bundled NATS serves.
*/}}
{{- define "natsbus.monitoringHttps" -}}
{{- $given := .w.autoscaling.useHttps -}}
{{- $serves := false -}}
{{- if .root.Values.nats.enabled -}}
{{- $serves = (include "natsbus.bundledNats" .root | fromJson).monitor.https | default false -}}
{{- end -}}
{{- if kindIs "invalid" $given -}}
{{- $serves -}}
{{- else -}}
{{- if and .root.Values.nats.enabled (ne $given $serves) -}}
{{- fail (printf "workers %q: autoscaling.useHttps is %v, but the bundled NATS serves its monitoring port over %s (nats.config.monitor.tls.enabled: %v): leave autoscaling.useHttps unset, it follows that" .w.name $given (ternary "HTTPS" "HTTP" $serves) $serves) -}}
{{- end -}}
{{- $given -}}
{{- end -}}
{{- end -}}

{{/*
What JetStream of the bundled NATS is, from nats.config.jetstream as the NATS chart reads it
(jetstream.enabled, default false in that chart; fileStore.enabled, default true;
memoryStore.enabled, default false), as JSON: {"mode": "off" | "file" | "memory" | "none",
"text": a line for NOTES}. natsbus keeps its job streams on file storage, so only "file" works.
*/}}
{{- define "natsbus.jetstream" -}}
{{- $js := dig "config" "jetstream" (dict) .Values.nats -}}
{{- $file := dig "fileStore" "enabled" true $js -}}
{{- $pvc := dig "fileStore" "pvc" "enabled" true $js -}}
{{- $memory := dig "memoryStore" "enabled" false $js -}}
{{- $mode := "none" -}}
{{- $text := "" -}}
{{- if not (dig "enabled" false $js) -}}
{{- $mode = "off" -}}
{{- $text = "off (nats.config.jetstream.enabled is false). natsbus keeps job requests, controls and replies in JetStream streams: the workers will not start until it is on" -}}
{{- else if $file -}}
{{- $mode = "file" -}}
{{- if $pvc -}}
{{- $text = printf "on file storage, a %s volume per server" (dig "fileStore" "pvc" "size" "10Gi" $js | default "10Gi") -}}
{{- else -}}
{{- $text = "on file storage without a volume (nats.config.jetstream.fileStore.pvc.enabled is false): the streams are lost with the pod" -}}
{{- end -}}
{{- if $memory -}}
{{- $text = printf "%s, and memory storage (up to %s per server)" $text (dig "memoryStore" "maxSize" "1Gi" $js | default "1Gi") -}}
{{- end -}}
{{- else if $memory -}}
{{- $mode = "memory" -}}
{{- $text = printf "in memory only (up to %s per server; nats.config.jetstream.fileStore.enabled is false). natsbus's job streams use file storage, so the workers cannot create them: turn fileStore on" (dig "memoryStore" "maxSize" "1Gi" $js | default "1Gi") -}}
{{- else -}}
{{- $text = "on, with neither file nor memory storage (nats.config.jetstream.fileStore and memoryStore are both off): no stream can be stored, so the workers will not start" -}}
{{- end -}}
{{- toJson (dict "mode" $mode "text" $text) -}}
{{- end -}}

{{/* Replicas of the job stream, or "" to leave natsbus's default. */}}
{{- define "natsbus.streamReplicas" -}}
{{- if not (kindIs "invalid" .Values.jetstream.streamReplicas) -}}
{{- .Values.jetstream.streamReplicas -}}
{{- else if .Values.nats.enabled -}}
{{- if dig "config" "cluster" "enabled" false .Values.nats -}}
{{- min 3 (int (dig "config" "cluster" "replicas" 3 .Values.nats)) -}}
{{- else -}}
1
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "natsbus.authSecretName" -}}
{{- default (printf "%s-nats-auth" (include "natsbus.fullname" .)) .Values.natsAuth.existingSecret -}}
{{- end -}}

{{/* The image reference of one worker group (passed as dict "root" $ "w" $w). */}}
{{- define "natsbus.image" -}}
{{- $image := mergeOverwrite (deepCopy .root.Values.image) (default dict .w.image) -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "natsbus.imagePullPolicy" -}}
{{- $image := mergeOverwrite (deepCopy .root.Values.image) (default dict .w.image) -}}
{{- $image.pullPolicy -}}
{{- end -}}

{{/* Paths where the credentials and certificates are mounted. */}}
{{- define "natsbus.authDir" -}}/etc/natsbus/nats-auth{{- end -}}
{{- define "natsbus.tlsDir" -}}/etc/natsbus/nats-tls{{- end -}}
