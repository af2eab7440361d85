{{/*
The handler table: the one place that maps a kind to the webhook(s) the server answers.
`path` must equal the server's kopf handler id ("/<id>"): kopf ALLOWS a request to an
unknown path without running any handler, so a wrong path silently disables the check.
`template` is where the pod template's metadata sits (for matchConditions).
*/}}
{{- define "nodelimits.handlers" -}}
Pod:
  - {name: pods, path: /pods, apiGroup: "", resource: pods, operations: [CREATE, UPDATE], template: "", retarget: true}
  - {name: pods-resize, path: /pods-resize, apiGroup: "", resource: pods/resize, operations: [UPDATE], template: ""}
Job:
  - {name: jobs, path: /jobs, apiGroup: batch, resource: jobs, operations: [CREATE, UPDATE], template: spec.template}
CronJob:
  - {name: cronjobs, path: /cronjobs, apiGroup: batch, resource: cronjobs, operations: [CREATE, UPDATE], template: spec.jobTemplate.spec.template, also: [spec.jobTemplate]}
Deployment:
  - {name: deployments, path: /deployments, apiGroup: apps, resource: deployments, operations: [CREATE, UPDATE], template: spec.template}
StatefulSet:
  - {name: statefulsets, path: /statefulsets, apiGroup: apps, resource: statefulsets, operations: [CREATE, UPDATE], template: spec.template}
DaemonSet:
  - {name: daemonsets, path: /daemonsets, apiGroup: apps, resource: daemonsets, operations: [CREATE, UPDATE], template: spec.template}
ReplicaSet:
  - {name: replicasets, path: /replicasets, apiGroup: apps, resource: replicasets, operations: [CREATE, UPDATE], template: spec.template}
ReplicationController:
  - {name: replicationcontrollers, path: /replicationcontrollers, apiGroup: "", resource: replicationcontrollers, operations: [CREATE, UPDATE], template: spec.template}
PodTemplate:
  - {name: podtemplates, path: /podtemplates, apiGroup: "", resource: podtemplates, operations: [CREATE, UPDATE], template: template}
{{- /* The kind table (webhook/core/kinds.py): version and scope per row; template "*": the
group annotation may sit on any role's template, so no matchCondition filters them. */}}
Job.batch.volcano.sh:
  - {name: jobs-v1alpha1.batch.volcano.sh, path: /batch.volcano.sh/v1alpha1/jobs, apiGroup: batch.volcano.sh, version: v1alpha1, resource: jobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
CronJob.batch.volcano.sh:
  - {name: cronjobs-v1alpha1.batch.volcano.sh, path: /batch.volcano.sh/v1alpha1/cronjobs, apiGroup: batch.volcano.sh, version: v1alpha1, resource: cronjobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
PyTorchJob.kubeflow.org:
  - {name: pytorchjobs-v1.kubeflow.org, path: /kubeflow.org/v1/pytorchjobs, apiGroup: kubeflow.org, version: v1, resource: pytorchjobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
TFJob.kubeflow.org:
  - {name: tfjobs-v1.kubeflow.org, path: /kubeflow.org/v1/tfjobs, apiGroup: kubeflow.org, version: v1, resource: tfjobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
XGBoostJob.kubeflow.org:
  - {name: xgboostjobs-v1.kubeflow.org, path: /kubeflow.org/v1/xgboostjobs, apiGroup: kubeflow.org, version: v1, resource: xgboostjobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
PaddleJob.kubeflow.org:
  - {name: paddlejobs-v1.kubeflow.org, path: /kubeflow.org/v1/paddlejobs, apiGroup: kubeflow.org, version: v1, resource: paddlejobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
JAXJob.kubeflow.org:
  - {name: jaxjobs-v1.kubeflow.org, path: /kubeflow.org/v1/jaxjobs, apiGroup: kubeflow.org, version: v1, resource: jaxjobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
MPIJob.kubeflow.org:
  - {name: mpijobs-v1.kubeflow.org, path: /kubeflow.org/v1/mpijobs, apiGroup: kubeflow.org, version: v1, resource: mpijobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
  - {name: mpijobs-v2beta1.kubeflow.org, path: /kubeflow.org/v2beta1/mpijobs, apiGroup: kubeflow.org, version: v2beta1, resource: mpijobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
JobSet.jobset.x-k8s.io:
  - {name: jobsets-v1alpha2.jobset.x-k8s.io, path: /jobset.x-k8s.io/v1alpha2/jobsets, apiGroup: jobset.x-k8s.io, version: v1alpha2, resource: jobsets, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
LeaderWorkerSet.leaderworkerset.x-k8s.io:
  - {name: leaderworkersets-v1.leaderworkerset.x-k8s.io, path: /leaderworkerset.x-k8s.io/v1/leaderworkersets, apiGroup: leaderworkerset.x-k8s.io, version: v1, resource: leaderworkersets, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
RayCluster.ray.io:
  - {name: rayclusters-v1.ray.io, path: /ray.io/v1/rayclusters, apiGroup: ray.io, version: v1, resource: rayclusters, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
RayService.ray.io:
  - {name: rayservices-v1.ray.io, path: /ray.io/v1/rayservices, apiGroup: ray.io, version: v1, resource: rayservices, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
RayJob.ray.io:
  - {name: rayjobs-v1.ray.io, path: /ray.io/v1/rayjobs, apiGroup: ray.io, version: v1, resource: rayjobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
Workflow.argoproj.io:
  - {name: workflows-v1alpha1.argoproj.io, path: /argoproj.io/v1alpha1/workflows, apiGroup: argoproj.io, version: v1alpha1, resource: workflows, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
WorkflowTemplate.argoproj.io:
  - {name: workflowtemplates-v1alpha1.argoproj.io, path: /argoproj.io/v1alpha1/workflowtemplates, apiGroup: argoproj.io, version: v1alpha1, resource: workflowtemplates, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
ClusterWorkflowTemplate.argoproj.io:
  - {name: clusterworkflowtemplates-v1alpha1.argoproj.io, path: /argoproj.io/v1alpha1/clusterworkflowtemplates, apiGroup: argoproj.io, version: v1alpha1, resource: clusterworkflowtemplates, operations: [CREATE, UPDATE], template: "*", scope: Cluster}
CronWorkflow.argoproj.io:
  - {name: cronworkflows-v1alpha1.argoproj.io, path: /argoproj.io/v1alpha1/cronworkflows, apiGroup: argoproj.io, version: v1alpha1, resource: cronworkflows, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
SparkApplication.sparkoperator.k8s.io:
  - {name: sparkapplications-v1beta2.sparkoperator.k8s.io, path: /sparkoperator.k8s.io/v1beta2/sparkapplications, apiGroup: sparkoperator.k8s.io, version: v1beta2, resource: sparkapplications, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
ScheduledSparkApplication.sparkoperator.k8s.io:
  - {name: scheduledsparkapplications-v1beta2.sparkoperator.k8s.io, path: /sparkoperator.k8s.io/v1beta2/scheduledsparkapplications, apiGroup: sparkoperator.k8s.io, version: v1beta2, resource: scheduledsparkapplications, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
TrainJob.trainer.kubeflow.org:
  - {name: trainjobs-v1alpha1.trainer.kubeflow.org, path: /trainer.kubeflow.org/v1alpha1/trainjobs, apiGroup: trainer.kubeflow.org, version: v1alpha1, resource: trainjobs, operations: [CREATE, UPDATE], template: "*", scope: Namespaced}
{{- end -}}

{{- define "nodelimits.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nodelimits.fullname" -}}
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

{{- define "nodelimits.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "nodelimits.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Seconds in a Go duration ("720h", "1h30m", "90s", "1.5h"), as a float: for comparing
certManager.duration with renewBefore (the schema checks the syntax).
*/}}
{{- define "nodelimits.durationSeconds" -}}
{{- $unit := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total := 0.0 -}}
{{- range (regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" . -1) -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $total = addf $total (mulf (float64 $number) (get $unit (trimPrefix $number .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{- define "nodelimits.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodelimits.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nodelimits.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nodelimits.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "nodelimits.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the server runs in the cluster (no webhook.url): Deployment, Service and co. */}}
{{- define "nodelimits.inCluster" -}}
{{- if not .Values.webhook.url -}}true{{- end -}}
{{- end -}}

{{/* Secret names. */}}
{{- define "nodelimits.tlsSecretName" -}}
{{- printf "%s-tls" (include "nodelimits.fullname" .) -}}
{{- end -}}
{{- define "nodelimits.caSecretName" -}}
{{- printf "%s-ca" (include "nodelimits.fullname" .) -}}
{{- end -}}
{{- define "nodelimits.certSecretName" -}}
{{- printf "%s-certs" (include "nodelimits.fullname" .) -}}
{{- end -}}
{{/* "true" when the server issues its own certificates (certificates.mode selfManaged, in the cluster). */}}
{{- define "nodelimits.selfManagedCerts" -}}
{{- if and (eq .Values.certificates.mode "selfManaged") (include "nodelimits.inCluster" .) -}}true{{- end -}}
{{- end -}}
{{- define "nodelimits.credentialsSecretName" -}}
{{- default (printf "%s-credentials" (include "nodelimits.fullname" .)) .Values.credentials.existingSecret -}}
{{- end -}}

{{- define "nodelimits.credentialsDir" -}}/etc/nodelimits/credentials{{- end -}}
{{- define "nodelimits.configDir" -}}/etc/nodelimits{{- end -}}

{{/* Whether the platform credentials Secret is mounted. */}}
{{- define "nodelimits.usesCredentials" -}}
{{- if ne .Values.config.platform.token_source "none" -}}true{{- end -}}
{{- end -}}

{{/*
The rendered config.yaml: .Values.config plus the chart-managed keys. Also checks what
the schema cannot: credentials present for the token source, cert and key side by side.
*/}}
{{- define "nodelimits.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $platform := $cfg.platform -}}
{{- $dir := include "nodelimits.credentialsDir" . -}}
{{- $source := $platform.token_source -}}
{{- if eq $source "file" -}}
{{- $_ := set $platform "token_file" (printf "%s/token" $dir) -}}
{{- else if has $source (list "aksk" "password") -}}
{{- $_ := set $platform "secret_dir" $dir -}}
{{- end -}}
{{- if not $cfg.policy.accelerators -}}
{{- $_ := unset $cfg.policy "accelerators" -}}
{{- end -}}
{{- if ne (dir $cfg.server.cert_file) (dir $cfg.server.key_file) -}}
{{- fail (printf "config.server.cert_file (%s) and config.server.key_file (%s) must be in one directory: the TLS Secret is mounted there" $cfg.server.cert_file $cfg.server.key_file) -}}
{{- end -}}
{{- if eq (int $cfg.server.port) (int $cfg.server.metrics_port) -}}
{{- fail (printf "config.server.port and config.server.metrics_port must differ (both %v): the webhook serves TLS on one, metrics and probes on the other" $cfg.server.port) -}}
{{- end -}}
{{- if gt (float64 $platform.connect_timeout) (float64 $platform.request_timeout) -}}
{{- fail (printf "config.platform.connect_timeout (%v) must not exceed config.platform.request_timeout (%v): connecting is part of one attempt" $platform.connect_timeout $platform.request_timeout) -}}
{{- end -}}
{{- if lt (float64 $cfg.cache.max_stale) (float64 $cfg.cache.ttl) -}}
{{- fail (printf "config.cache.max_stale (%v) must be at least config.cache.ttl (%v): a limit goes stale only after its ttl" $cfg.cache.max_stale $cfg.cache.ttl) -}}
{{- end -}}
{{- if and (eq .Values.certificates.mode "certManager") (include "nodelimits.inCluster" .) -}}
{{- $cm := .Values.certificates.certManager -}}
{{- if ge (include "nodelimits.durationSeconds" $cm.renewBefore | float64) (include "nodelimits.durationSeconds" $cm.duration | float64) -}}
{{- fail (printf "certificates.certManager.renewBefore (%s) must be shorter than duration (%s)" $cm.renewBefore $cm.duration) -}}
{{- end -}}
{{- end -}}
{{- if ge (float64 $platform.deadline) (float64 $cfg.admission.timeout_seconds) -}}
{{- fail (printf "config.platform.deadline (%v) must be below config.admission.timeout_seconds (%v)" $platform.deadline $cfg.admission.timeout_seconds) -}}
{{- end -}}
{{- if le (float64 .Values.terminationGracePeriodSeconds) (float64 $cfg.server.shutdown_delay) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.server.shutdown_delay (%v)" .Values.terminationGracePeriodSeconds $cfg.server.shutdown_delay) -}}
{{- end -}}
{{- if include "nodelimits.selfManagedCerts" . -}}
{{- $sm := .Values.certificates.selfManaged -}}
{{- if ge (int $sm.renewBeforeDays) (int $sm.certValidityDays) -}}
{{- fail (printf "certificates.selfManaged.renewBeforeDays (%v) must be below certValidityDays (%v)" $sm.renewBeforeDays $sm.certValidityDays) -}}
{{- end -}}
{{- if ge (int $sm.caRenewBeforeDays) (int $sm.caValidityDays) -}}
{{- fail (printf "certificates.selfManaged.caRenewBeforeDays (%v) must be below caValidityDays (%v)" $sm.caRenewBeforeDays $sm.caValidityDays) -}}
{{- end -}}
{{- if le (int $sm.caRenewBeforeDays) (int $sm.renewBeforeDays) -}}
{{- fail (printf "certificates.selfManaged.caRenewBeforeDays (%v) must exceed renewBeforeDays (%v): a new CA must sign a serving certificate before the old CA's last one is due" $sm.caRenewBeforeDays $sm.renewBeforeDays) -}}
{{- end -}}
{{- $fullname := include "nodelimits.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list (printf "%s.%s.svc" $fullname $ns) (printf "%s.%s.svc.cluster.local" $fullname $ns) (printf "%s.%s" $fullname $ns) $fullname -}}
{{- $day := 86400 -}}
{{- $_ := set $cfg "certificates" (dict "self_managed" true "namespace" $ns "secret_name" (include "nodelimits.certSecretName" .) "webhook_configuration" $fullname "hosts" $hosts "duration" (mul $sm.certValidityDays $day) "renew_before" (mul $sm.renewBeforeDays $day) "ca_duration" (mul $sm.caValidityDays $day) "ca_renew_before" (mul $sm.caRenewBeforeDays $day) "check_interval" $sm.checkIntervalSeconds) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Fails when the credentials for the token source are neither given nor an existing Secret. */}}
{{- define "nodelimits.checkCredentials" -}}
{{- $c := .Values.credentials -}}
{{- $need := dict "none" (list) "file" (list "token") "aksk" (list "accessKey" "secretKey" "user") "password" (list "user" "password" "orgId") -}}
{{- if not $c.existingSecret -}}
{{- range (get $need .Values.config.platform.token_source) -}}
{{- if not (get $c .) -}}
{{- fail (printf "config.platform.token_source=%s needs credentials.%s (or credentials.existingSecret)" $.Values.config.platform.token_source .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The namespaceSelector: kube-system, the release namespace and the user's list are never sent. */}}
{{- define "nodelimits.namespaceSelector" -}}
{{- $excluded := concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ toJson $excluded }}
{{- with .Values.webhook.namespaceSelectorExpressions }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{/*
CEL that is true when the object, the pod template at `template`, or one of the metadata
holders in `also` (a CronJob's spec.jobTemplate: its Jobs carry that metadata, and the
server reads it) carries the group annotation. Each step is guarded with has(): a CEL error
counts as a webhook failure and failurePolicy Fail would then reject the object.
The key matches in any case (`NodeLimits.io/Resource-Group`), as the server and
`nodelimits check` read it: otherwise such an object would be allowed unchecked online
but rejected offline (docs/reliability.md, "No bypass").
Called with (dict "key" <annotation> "template" <dotted path, "" or "*"> "also" <list of
dotted paths>).
*/}}
{{- define "nodelimits.annotatedExpression" -}}
{{- $key := .key | quote -}}
{{- $folded := .key | lower | quote -}}
{{- $has := "(%s in %s || %s.exists(k, k.lowerAscii() == %s))" -}}
{{- if eq .template "*" -}}
true
{{- else -}}
{{- $clauses := list (printf "(has(object.metadata.annotations) && %s)" (printf $has $key "object.metadata.annotations" "object.metadata.annotations" $folded)) -}}
{{- $holders := .also | default list -}}
{{- if .template -}}
{{- $holders = append $holders .template -}}
{{- end -}}
{{- range $holder := $holders -}}
{{- $guards := list -}}
{{- $path := "object" -}}
{{- range (splitList "." (printf "%s.metadata.annotations" $holder)) -}}
{{- $path = printf "%s.%s" $path . -}}
{{- $guards = append $guards (printf "has(%s)" $path) -}}
{{- end -}}
{{- $clauses = append $clauses (printf "(%s && %s)" (join " && " $guards) (printf $has $key $path $path $folded)) -}}
{{- end -}}
{{- join " || " $clauses -}}
{{- end -}}
{{- end -}}

{{/*
CEL: a Pod UPDATE reaches the webhook only when it changes (or adds, or removes) the group
or type annotation in any case of the key: re-targeting a checked pod is checked, while
the controllers' and kubelet's everyday Pod UPDATEs (labels, finalizers) never depend on
the webhook being up. The webhook compares the same way (webhook/serve/admission.py).
*/}}
{{- define "nodelimits.retargetExpression" -}}
{{- $keys := printf "[%s, %s]" (.group | lower | quote) (.type | lower | quote) -}}
{{- $pick := "(has(%[1]s.metadata.annotations) ? %[1]s.metadata.annotations.filter(k, k.lowerAscii() in %[2]s).map(k, k + '=' + %[1]s.metadata.annotations[k]) : [])" -}}
{{- $new := printf $pick "object" $keys -}}
{{- $old := printf $pick "oldObject" $keys -}}
{{- printf "request.operation != 'UPDATE' || !(%s.all(x, x in %s) && %s.all(x, x in %s))" $new $old $old $new -}}
{{- end -}}

{{/* The webhook configuration's clientConfig for one handler path. */}}
{{- define "nodelimits.clientConfig" -}}
{{- $root := .root -}}
{{- if $root.Values.webhook.url -}}
url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) .path | quote }}
{{- with $root.Values.webhook.caBundle }}
caBundle: {{ . }}
{{- end }}
{{- else -}}
service:
  name: {{ include "nodelimits.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ .path }}
  port: {{ $root.Values.service.port }}
{{- with .caBundle }}
caBundle: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}
