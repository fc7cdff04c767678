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

{{/* The NATS URLs the workers connect to, as JSON: {"urls": [...]}. */}}
{{- define "natsbus.natsUrls" -}}
{{- if .Values.nats.enabled -}}
{{- $scheme := ternary "tls" "nats" .Values.natsTls.enabled -}}
{{- $port := dig "config" "nats" "port" 4222 .Values.nats -}}
{{- $url := printf "%s://%s.%s.svc:%v" $scheme (include "natsbus.natsFullname" .) (include "natsbus.natsNamespace" .) $port -}}
{{- toJson (dict "urls" (list $url)) -}}
{{- else -}}
{{- if not .Values.externalNats.urls -}}
{{- fail "externalNats.urls: give at least one NATS server URL when nats.enabled is false (e.g. --set externalNats.urls[0]=nats://nats.messaging:4222)" -}}
{{- end -}}
{{- toJson (dict "urls" .Values.externalNats.urls) -}}
{{- end -}}
{{- end -}}

{{/* host:port of the NATS monitoring endpoint, for KEDA. */}}
{{- define "natsbus.natsMonitoringEndpoint" -}}
{{- if .Values.nats.enabled -}}
{{- if not (dig "config" "monitor" "enabled" true .Values.nats) -}}
{{- fail "KEDA autoscaling reads the NATS monitoring port: keep nats.config.monitor.enabled true" -}}
{{- end -}}
{{- $port := dig "config" "monitor" "port" 8222 .Values.nats -}}
{{- printf "%s-headless.%s.svc.%s:%v" (include "natsbus.natsFullname" .) (include "natsbus.natsNamespace" .) .Values.clusterDomain $port -}}
{{- else -}}
{{- required "externalNats.monitoringEndpoint: KEDA autoscaling needs the host:port of the NATS monitoring endpoint when nats.enabled is false" .Values.externalNats.monitoringEndpoint -}}
{{- end -}}
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
