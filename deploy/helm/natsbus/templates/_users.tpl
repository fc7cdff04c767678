{{/*
NATS users of natsAuth.type=provisioned: one per worker group (role runner, the group's worker
name, the group's channel; a session group: natsbus.servePermissions) and one per natsAuth.provisioned.clients entry, each with exactly the
permissions natsbus.access.permissions(...) generates. docs/deploy.md, "NATS users per worker
group", describes what is made; tests/deploy/test_deploy_chart_users.py checks it against the
Python function and against a real nats-server.
*/}}

{{/*
The least permissions of a bus, as natsbus.access.permissions(channel=, names=, role=) returns
them for the subject prefix "natsbus" and the stream "NATSBUS_JOBS" (what `natsbus run` uses):
JSON {"publish": {"allow": [...]}, "subscribe": {"allow": [...]}}, item for item and in the same
order (PermissionSet.as_dict()). The channel and the names must be plain ([A-Za-z0-9_-]+): their
subject tokens are then the names themselves (natsbus.bus.nats.subjects.encode_token), and the
job consumer is natsbus.jobConsumer. Call with dict "channel" "names" "role" (and "where", the
values path named in error messages).
*/}}
{{- define "natsbus.permissions" -}}
{{- $prefix := "natsbus" -}}
{{- $stream := "NATSBUS_JOBS" -}}
{{- $role := .role -}}
{{- if not (has $role (list "worker" "requester" "runner" "observer")) -}}
{{- fail (printf "%s: unknown role %q (worker, requester, runner or observer)" .where $role) -}}
{{- end -}}
{{- $hosted := .names | default (list) | uniq | sortAlpha -}}
{{- if and (ne $role "observer") (not $hosted) -}}
{{- fail (printf "%s: a %s sends as at least one name: give names" .where $role) -}}
{{- end -}}
{{- range $name := prepend $hosted .channel -}}
{{- if not (regexMatch "^[A-Za-z0-9_-]+$" (toString $name)) -}}
{{- fail (printf "%s: %q is not a plain name: natsAuth.type=provisioned writes NATS permissions for names of letters, digits, \"-\" and \"_\" only" $.where $name) -}}
{{- end -}}
{{- end -}}
{{- $root := printf "%s.%s" $prefix .channel -}}
{{- $jobs := $stream -}}
{{- $requests := printf "%s_REQUESTS" $stream -}}
{{- $api := "$JS.API" -}}
{{- $lanes := list "sys" "data" -}}
{{- $runsJobs := has $role (list "worker" "runner") -}}
{{- $publish := list -}}
{{- $subscribe := list -}}
{{- /* What it reads: core messages, and its inboxes. */ -}}
{{- if eq $role "observer" -}}
{{- range $lane := $lanes -}}
{{- $subscribe = append $subscribe (printf "%s.%s.>" $root $lane) -}}
{{- end -}}
{{- else -}}
{{- range $lane := $lanes -}}
{{- $subscribe = append $subscribe (printf "%s.%s.all.*" $root $lane) -}}
{{- end -}}
{{- range $name := $hosted -}}
{{- range $lane := $lanes -}}
{{- $subscribe = append $subscribe (printf "%s.%s.to.%s.*" $root $lane $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* The fast copies of replies, for any instance (ids are random). */ -}}
{{- $subscribe = append $subscribe (printf "%s.rsp.>" $root) -}}
{{- /* On a shared pair, a worker's requests are listened for until the first makes its consumer. */ -}}
{{- if $runsJobs -}}
{{- range $name := $hosted -}}
{{- $subscribe = append $subscribe (printf "%s.job.req.%s.*" $root $name) -}}
{{- end -}}
{{- end -}}
{{- $subscribe = append $subscribe (printf "_INBOX.%s.>" $root) -}}
{{- /* What it sends, always under its own sender tokens. */ -}}
{{- if ne $role "observer" -}}
{{- range $sender := $hosted -}}
{{- range $lane := $lanes -}}
{{- $publish = concat $publish (list
      (printf "%s.%s.all.%s" $root $lane $sender)
      (printf "%s.%s.to.*.%s" $root $lane $sender)
      (printf "%s.life.%s.all.%s" $root $lane $sender)
      (printf "%s.life.%s.to.*.%s" $root $lane $sender)) -}}
{{- end -}}
{{- $publish = concat $publish (list (printf "%s.job.req.*.%s" $root $sender) (printf "%s.job.ctl.*.%s" $root $sender)) -}}
{{- if $runsJobs -}}
{{- $publish = append $publish (printf "%s.job.rsp.*.*.%s" $root $sender) -}}
{{- $publish = append $publish (printf "%s.rsp.*.*.%s" $root $sender) -}}
{{- $publish = append $publish (printf "%s.dlq.%s" $root $sender) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* JetStream: the streams, the instance consumers, each worker's request consumer. */ -}}
{{- range $name := list $jobs $requests -}}
{{- $publish = append $publish (printf "%s.STREAM.INFO.%s" $api $name) -}}
{{- end -}}
{{- if eq $role "runner" -}}
{{- range $name := list $jobs $requests -}}
{{- $publish = concat $publish (list (printf "%s.STREAM.CREATE.%s" $api $name) (printf "%s.STREAM.UPDATE.%s" $api $name)) -}}
{{- end -}}
{{- end -}}
{{- $publish = concat $publish (list
      (printf "%s.CONSUMER.CREATE.%s.*" $api $jobs)
      (printf "%s.CONSUMER.MSG.NEXT.%s.*" $api $jobs)
      (printf "%s.CONSUMER.INFO.%s.*" $api $jobs)
      (printf "%s.CONSUMER.DELETE.%s.*" $api $jobs)
      (printf "$JS.ACK.%s.>" $jobs)) -}}
{{- if $runsJobs -}}
{{- $publish = append $publish (printf "%s.STREAM.MSG.GET.%s" $api $jobs) -}}
{{- range $name := $hosted -}}
{{- $consumer := include "natsbus.jobConsumer" (dict "channel" $.channel "worker" $name) -}}
{{- $publish = concat $publish (list
      (printf "%s.CONSUMER.CREATE.%s.%s.%s.job.req.%s.*" $api $requests $consumer $root $name)
      (printf "%s.CONSUMER.MSG.NEXT.%s.%s" $api $requests $consumer)
      (printf "%s.CONSUMER.INFO.%s.%s" $api $requests $consumer)
      (printf "$JS.ACK.%s.%s.>" $requests $consumer)) -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "publish" (dict "allow" $publish) "subscribe" (dict "allow" $subscribe)) -}}
{{- end -}}

{{/*
A serving process's permissions (kind sessions), as natsbus.access.serve_permissions(channel=,
group=, names=, services_channel=) returns them, item for item: a runner's on the channel for
the group's worker; a worker's for the session workers' names on any channel (the placeholder
channel's set with its root and its job consumers turned into "*"), without its inboxes; the
deletion of request consumers; a requester's as sessions-<group> on the services channel
(without its inboxes). Call with dict "channel" "group" "names" "servicesChannel" "where".
*/}}
{{- define "natsbus.servePermissions" -}}
{{- $placeholder := "natsbus-session-channel" -}}
{{- if not .names -}}
{{- fail (printf "%s: natsAuth.type=provisioned needs sessions.workerNames, the names of the workers make_session makes" .where) -}}
{{- end -}}
{{- $deployment := include "natsbus.permissions" (dict "channel" .channel "names" (list .group) "role" "runner" "where" .where) | fromJson -}}
{{- $anywhere := include "natsbus.permissions" (dict "channel" $placeholder "names" .names "role" "worker" "where" .where) | fromJson -}}
{{- $replace := list (list (printf "natsbus.%s." $placeholder) "natsbus.*.") -}}
{{- range $name := .names | uniq | sortAlpha -}}
{{- $replace = append $replace (list (include "natsbus.jobConsumer" (dict "channel" $placeholder "worker" $name)) "*") -}}
{{- end -}}
{{- $publish := $deployment.publish.allow -}}
{{- $subscribe := $deployment.subscribe.allow -}}
{{- range $subject := $anywhere.publish.allow -}}
{{- range $r := $replace -}}
{{- $subject = replace (index $r 0) (index $r 1) $subject -}}
{{- end -}}
{{- $publish = append $publish $subject -}}
{{- end -}}
{{- range $subject := $anywhere.subscribe.allow -}}
{{- if not (hasPrefix "_INBOX." $subject) -}}
{{- range $r := $replace -}}
{{- $subject = replace (index $r 0) (index $r 1) $subject -}}
{{- end -}}
{{- $subscribe = append $subscribe $subject -}}
{{- end -}}
{{- end -}}
{{- $publish = append $publish "$JS.API.CONSUMER.DELETE.NATSBUS_JOBS_REQUESTS.*" -}}
{{- if .servicesChannel -}}
{{- $services := include "natsbus.permissions" (dict "channel" .servicesChannel "names" (list (printf "sessions-%s" .group)) "role" "requester" "where" .where) | fromJson -}}
{{- $publish = concat $publish $services.publish.allow -}}
{{- range $subject := $services.subscribe.allow -}}
{{- if not (hasPrefix "_INBOX." $subject) -}}
{{- $subscribe = append $subscribe $subject -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "publish" (dict "allow" (uniq $publish)) "subscribe" (dict "allow" (uniq $subscribe))) -}}
{{- end -}}

{{/*
The Secret holding the NATS server's side of the provisioned users (auth.conf). Named after the
release alone, so that the NATS chart's values can name it too (a $tplYaml in values.yaml that
calls this template in the NATS chart's context, where only .Release is shared).
*/}}
{{- define "natsbus.serverAuthSecretName" -}}
{{- $base := ternary .Release.Name (printf "%s-natsbus" .Release.Name) (contains "natsbus" .Release.Name) -}}
{{- printf "%s-nats-server-auth" ($base | trunc 63 | trimSuffix "-") -}}
{{- end -}}

{{/* The key of auth.conf in that Secret, and where the bundled NATS mounts it. */}}
{{- define "natsbus.serverAuthFile" -}}auth.conf{{- end -}}

{{/*
The provisioned users, as JSON {"users": [...]}: every worker group, then every client, each
{name, user, password, hash, check, channel, role, names, permissions, group}. Computed once per
render (the passwords may be random and the hashes are salted, and the Secrets, the server's
configuration and the pods' checksums must agree), then kept in .Values._natsbusProvisioned.
*/}}
{{- define "natsbus.provisionedUsers" -}}
{{- if not (hasKey .Values "_natsbusProvisioned") -}}
{{- $_ := set .Values "_natsbusProvisioned" (include "natsbus.makeProvisionedUsers" . | fromJson) -}}
{{- end -}}
{{- toJson (get .Values "_natsbusProvisioned") -}}
{{- end -}}

{{/*
Each user's password: natsAuth.provisioned.passwords.<name> if given, else the one in the Secret
the chart made before (lookup, on upgrade), else 32 random letters and digits. Its bcrypt hash is
kept from that Secret while the password is the same (the stored check, sha256 of hash NUL
password, says so), so that an upgrade that changes nothing changes neither the server's
configuration nor the pods.
*/}}
{{- define "natsbus.makeProvisionedUsers" -}}
{{- $auth := .Values.natsAuth -}}
{{- $conf := $auth.provisioned | default dict -}}
{{- if $auth.existingSecret -}}
{{- fail "natsAuth.existingSecret: not used with natsAuth.type=provisioned (the chart writes each password's hash into the NATS server's configuration, so it must know the passwords): give them in natsAuth.provisioned.passwords, or let the chart make and keep them" -}}
{{- end -}}
{{- $fullname := include "natsbus.fullname" . -}}
{{- $existing := (lookup "v1" "Secret" .Release.Namespace (include "natsbus.authSecretName" .)).data | default dict -}}
{{- $passwords := $conf.passwords | default dict -}}
{{- $wanted := list -}}
{{- range $index, $w := (include "natsbus.workerGroups" . | fromJson).groups -}}
{{- $where := printf "workers[%d] (group %q)" $index $w.name -}}
{{- if not (regexMatch "^[A-Za-z0-9_-]+$" $w.workerName) -}}
{{- fail (printf "%s: natsAuth.type=provisioned needs a plain worker name (letters, digits, \"-\" and \"_\"), got workerName %q: rename the worker, or choose another natsAuth.type" $where $w.workerName) -}}
{{- end -}}
{{- if not (regexMatch "^[A-Za-z0-9_-]+$" $w.channel) -}}
{{- fail (printf "%s: natsAuth.type=provisioned needs a plain channel (letters, digits, \"-\" and \"_\"), got %q: rename the channel, or choose another natsAuth.type" $where $w.channel) -}}
{{- end -}}
{{- if eq $w.kind "sessions" -}}
{{- $wanted = append $wanted (dict "name" $w.name "group" true "where" $where "channel" $w.channel "role" "serve" "names" ($w.sessions.workerNames | default (list)) "servicesChannel" $w.sessions.servicesChannel "sessionGroup" $w.workerName) -}}
{{- else -}}
{{- $wanted = append $wanted (dict "name" $w.name "group" true "where" $where "channel" $w.channel "role" "runner" "names" (list $w.workerName)) -}}
{{- end -}}
{{- end -}}
{{- range $index, $c := $conf.clients | default (list) -}}
{{- $where := printf "natsAuth.provisioned.clients[%d] (%q)" $index $c.name -}}
{{- $role := $c.role | default "requester" -}}
{{- $names := ternary (list) (list $c.name) (eq $role "observer") -}}
{{- if hasKey $c "names" -}}
{{- $names = $c.names -}}
{{- end -}}
{{- $wanted = append $wanted (dict "name" $c.name "group" false "where" $where "channel" ($c.channel | default $.Values.channel) "role" $role "names" $names) -}}
{{- end -}}
{{- $seen := dict -}}
{{- $users := list -}}
{{- range $u := $wanted -}}
{{- if hasKey $seen $u.name -}}
{{- fail (printf "%s: the name %q is taken by a worker group or another client: each names one NATS user (%s-%s)" $u.where $u.name $fullname $u.name) -}}
{{- end -}}
{{- $_ := set $seen $u.name true -}}
{{- $permissions := dict -}}
{{- if eq $u.role "serve" -}}
{{- $permissions = include "natsbus.servePermissions" (dict "channel" $u.channel "group" $u.sessionGroup "names" $u.names "servicesChannel" $u.servicesChannel "where" $u.where) | fromJson -}}
{{- else -}}
{{- $permissions = include "natsbus.permissions" (dict "channel" $u.channel "names" $u.names "role" $u.role "where" $u.where) | fromJson -}}
{{- end -}}
{{- $old := get $existing (printf "%s.password" $u.name) | default "" | b64dec -}}
{{- $password := get $passwords $u.name | default $old | default (randAlphaNum 32) | toString -}}
{{- $oldHash := get $existing (printf "%s.bcrypt" $u.name) | default "" | b64dec -}}
{{- $oldCheck := get $existing (printf "%s.bcrypt-check" $u.name) | default "" | b64dec -}}
{{- $hash := "" -}}
{{- if and $oldHash (eq $oldCheck (printf "%s\x00%s" $oldHash $password | sha256sum)) -}}
{{- $hash = $oldHash -}}
{{- else -}}
{{- $hash = bcrypt $password -}}
{{- end -}}
{{- $check := printf "%s\x00%s" $hash $password | sha256sum -}}
{{- $users = append $users (merge (dict "user" (printf "%s-%s" $fullname $u.name) "password" $password "hash" $hash "check" $check "permissions" $permissions) (omit $u "where")) -}}
{{- end -}}
{{- range $name, $_ := $passwords -}}
{{- if not (hasKey $seen $name) -}}
{{- fail (printf "natsAuth.provisioned.passwords.%s: no worker group or client is named %q" $name $name) -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "users" $users) -}}
{{- end -}}

{{/*
One entry of the server's `users` list (JSON, which NATS configuration files accept): the user,
its bcrypt hash and its `permissions` block. Call with dict "user" "hash" "permissions".
*/}}
{{- define "natsbus.natsUser" -}}
{
  "user": {{ .user | toRawJson }},
  "password": {{ .hash | toRawJson }},
  "permissions": {
{{- range $i, $operation := list "publish" "subscribe" }}
    {{ $operation | toRawJson }}: {
      "allow": [
{{- $subjects := (get $.permissions $operation).allow }}
{{- range $j, $subject := $subjects }}
        {{ $subject | toRawJson }}{{ if lt $j (sub (len $subjects) 1) }},{{ end }}
{{- end }}
      ]
    }{{ if eq $i 0 }},{{ end }}
{{- end }}
  }
}
{{- end -}}

{{/*
auth.conf: the server's `authorization { users: [...] }` with every provisioned user (and
natsAuth.provisioned.extraUsers), as JSON. Without natsAuth.type=provisioned it holds no users
(an empty object), so that the bundled NATS can always include it.
*/}}
{{- define "natsbus.serverAuthConf" -}}
{{- if eq .Values.natsAuth.type "provisioned" -}}
{{- $entries := list -}}
{{- range $u := (include "natsbus.provisionedUsers" . | fromJson).users -}}
{{- $entries = append $entries (include "natsbus.natsUser" (dict "user" $u.user "hash" $u.hash "permissions" $u.permissions) | nindent 6 | trimPrefix "\n") -}}
{{- end -}}
{{- range $extra := .Values.natsAuth.provisioned.extraUsers | default (list) -}}
{{- $entries = append $entries (printf "      %s" (toRawJson $extra)) -}}
{{- end -}}
# NATS users of natsbus release {{ .Release.Name }} (natsAuth.type=provisioned): one per worker
# group and client, with the permissions `natsbus permissions` generates. Include this file in
# the server's configuration (it sets the whole `authorization` block).
{
  "authorization": {
    "users": [
{{ join ",\n" $entries }}
    ]
  }
}
{{ else -}}
# natsbus release {{ .Release.Name }}: natsAuth.type is not "provisioned", so no users here.
{}
{{ end -}}
{{- end -}}

{{/*
With the bundled NATS: fail when the server would not load the provisioned users, or when its
own values set what auth.conf sets. The wiring is the three `nats:` defaults of values.yaml.
*/}}
{{- define "natsbus.checkNatsWiring" -}}
{{- if .Values.nats.enabled -}}
{{- $nats := .Values.nats -}}
{{- $merge := dig "config" "merge" (dict) $nats | default (dict) -}}
{{- $included := not (empty (get $merge "zz-natsbus-users$include")) -}}
{{- $mounted := false -}}
{{- range $op := dig "container" "patch" (list) $nats | default (list) -}}
{{- if and (kindIs "map" $op) (kindIs "map" $op.value) (eq (toString (dig "value" "name" "" $op)) "natsbus-users") -}}
{{- $mounted = true -}}
{{- end -}}
{{- end -}}
{{- $volume := false -}}
{{- range $op := dig "podTemplate" "patch" (list) $nats | default (list) -}}
{{- if and (kindIs "map" $op) (kindIs "map" $op.value) (eq (toString (dig "value" "name" "" $op)) "natsbus-users") -}}
{{- $volume = true -}}
{{- end -}}
{{- end -}}
{{- if and $included (not (and $mounted $volume)) -}}
{{- fail "nats.container.patch / nats.podTemplate.patch: keep the natsbus-users volume and its mount of values.yaml in them (lists replace the defaults): nats.config.merge includes the file they mount" -}}
{{- end -}}
{{- if eq .Values.natsAuth.type "provisioned" -}}
{{- if not $included -}}
{{- fail "nats.config.merge: keep \"zz-natsbus-users$include\" with natsAuth.type=provisioned: it is how the bundled NATS server loads the users" -}}
{{- end -}}
{{- if hasKey $merge "authorization" -}}
{{- fail "nats.config.merge.authorization: natsAuth.type=provisioned writes the server's authorization block; add other users with natsAuth.provisioned.clients or natsAuth.provisioned.extraUsers" -}}
{{- end -}}
{{- if dig "config" "resolver" "enabled" false $nats -}}
{{- fail "natsAuth.type=provisioned makes users in the server's configuration, which a server in operator mode (nats.config.resolver) does not take: make the users with nsc from `natsbus permissions --json` (docs/deploy.md)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
