{{/*
Return the chart name, truncated to 63 characters (DNS label limit).
*/}}
{{- define "radgpt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Return the fully qualified release name (release-chart), truncated to 63 characters.
*/}}
{{- define "radgpt.fullname" -}}
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

{{/*
Return a component's resource name: fullname-suffix, truncated to 63 characters.
Usage: include "radgpt.componentName" (dict "root" $ "suffix" "model-server")
*/}}
{{- define "radgpt.componentName" -}}
{{- printf "%s-%s" (include "radgpt.fullname" .root | trunc (int (sub 62 (len .suffix)))) .suffix | trimSuffix "-" -}}
{{- end -}}

{{/*
Return the model server resource name.
*/}}
{{- define "radgpt.modelServer.fullname" -}}
{{- include "radgpt.componentName" (dict "root" . "suffix" "model-server") -}}
{{- end -}}

{{/*
Return the name of the service's ConfigMap.
*/}}
{{- define "radgpt.configMapName" -}}
{{- include "radgpt.componentName" (dict "root" . "suffix" "config") -}}
{{- end -}}

{{/*
Return the name of the Secret the chart creates for literal credentials.
*/}}
{{- define "radgpt.secretName" -}}
{{- include "radgpt.componentName" (dict "root" . "suffix" "credentials") -}}
{{- end -}}

{{/*
Return the chart label value (name-version).
*/}}
{{- define "radgpt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Return the common labels of every resource.
*/}}
{{- define "radgpt.labels" -}}
helm.sh/chart: {{ include "radgpt.chart" . }}
app.kubernetes.io/name: {{ include "radgpt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: radgpt
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Return the selector labels of a component.
Usage: include "radgpt.selectorLabels" (dict "root" $ "component" "service")
*/}}
{{- define "radgpt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "radgpt.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Return the labels of a component's resources (common + selector labels).
*/}}
{{- define "radgpt.componentLabels" -}}
{{ include "radgpt.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Return the common annotations block content (may be empty).
*/}}
{{- define "radgpt.annotations" -}}
{{- with .Values.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end -}}

{{/*
Return a full image reference registry/repository:tag or @digest.
Usage: include "radgpt.imageRef" (dict "image" .Values.image "global" .Values.global "defaultTag" .Chart.AppVersion)
*/}}
{{- define "radgpt.imageRef" -}}
{{- $registry := default .image.registry .global.imageRegistry -}}
{{- $repository := .image.repository -}}
{{- $prefix := ternary (printf "%s/%s" $registry $repository) $repository (ne $registry "") -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $prefix .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $prefix (toString (default .defaultTag .image.tag)) -}}
{{- end -}}
{{- end -}}

{{/*
Return the service image reference.
*/}}
{{- define "radgpt.image" -}}
{{- include "radgpt.imageRef" (dict "image" .Values.image "global" .Values.global "defaultTag" .Chart.AppVersion) -}}
{{- end -}}

{{/*
Return the model server image reference for the selected engine.
*/}}
{{- define "radgpt.modelServer.image" -}}
{{- $engine := index .Values.modelServer .Values.modelServer.engine -}}
{{- include "radgpt.imageRef" (dict "image" $engine.image "global" .Values.global "defaultTag" "") -}}
{{- end -}}

{{/*
Return the imagePullSecrets block content (may be empty).
*/}}
{{- define "radgpt.imagePullSecrets" -}}
{{- range .Values.global.imagePullSecrets }}
- name: {{ . }}
{{- end }}
{{- end -}}

{{/*
Return the ServiceAccount name of the service.
*/}}
{{- define "radgpt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "radgpt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Return the model server's listen port for the selected engine.
*/}}
{{- define "radgpt.modelServer.port" -}}
{{- (index .Values.modelServer .Values.modelServer.engine).port -}}
{{- end -}}

{{/*
Return the inference backend of the service (RADGPT_INFERENCE__BACKEND).
*/}}
{{- define "radgpt.inference.backend" -}}
{{- if .Values.inference.backend -}}
{{- .Values.inference.backend -}}
{{- else if eq .Values.modelServer.engine "vllm" -}}
openai
{{- else -}}
tgi
{{- end -}}
{{- end -}}

{{/*
Return the model server URL the service calls (RADGPT_INFERENCE__URL).
*/}}
{{- define "radgpt.inference.url" -}}
{{- if .Values.inference.url -}}
{{- .Values.inference.url -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%v" (include "radgpt.modelServer.fullname" .) .Release.Namespace .Values.modelServer.service.port -}}
{{- end -}}
{{- end -}}

{{/*
Return the name of the PVC holding the base model and the adapters.
*/}}
{{- define "radgpt.modelServer.claimName" -}}
{{- default (include "radgpt.modelServer.fullname" .) .Values.modelServer.storage.existingClaim -}}
{{- end -}}

{{/*
Return the directory with the adapter's radgpt-adapter.json inside the service pod
(RADGPT_INFERENCE__ADAPTER_PATH), or nothing for the adapter shipped in the image.
*/}}
{{- define "radgpt.inference.adapterDir" -}}
{{- $source := .Values.inference.adapterMetadata.source -}}
{{- if eq $source "volume" -}}
{{- range .Values.modelServer.adapters -}}
{{- if eq .name $.Values.inference.adapter -}}
{{- printf "%s/%s" $.Values.modelServer.storage.mountPath .path -}}
{{- end -}}
{{- end -}}
{{- else if eq $source "configMap" -}}
/etc/radgpt/adapter
{{- end -}}
{{- end -}}

{{/*
Return "true" when Kafka uses SASL.
*/}}
{{- define "radgpt.kafka.sasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{/*
Return "true" when Kafka uses TLS.
*/}}
{{- define "radgpt.kafka.tls" -}}
{{- if or (eq .Values.kafka.securityProtocol "SSL") (eq .Values.kafka.securityProtocol "SASL_SSL") -}}true{{- end -}}
{{- end -}}

{{/*
Return the secretKeyRef (name/key, optional) of a credential, or nothing when it is not set.
A credential is a literal (stored in the chart's Secret), a {secretName, secretKey} reference,
or, with secrets.existingSecret, a key of that Secret.
Usage: include "radgpt.secretKeyRef" (dict "root" $ "value" .Values.database.url "key" "databaseUrl" "optional" false)
*/}}
{{- define "radgpt.secretKeyRef" -}}
{{- $keyName := index .root.Values.secrets.keys .key -}}
{{- if kindIs "map" .value -}}
name: {{ .value.secretName }}
key: {{ .value.secretKey }}
{{- else if .root.Values.secrets.existingSecret -}}
name: {{ .root.Values.secrets.existingSecret }}
key: {{ $keyName }}
{{- if .optional }}
optional: true
{{- end }}
{{- else if .value -}}
name: {{ include "radgpt.secretName" .root }}
key: {{ $keyName }}
{{- end -}}
{{- end -}}

{{/*
Return the list of credentials: env name, value, key in secrets.keys, whether it may be absent.
Only credentials that apply to the current configuration are listed.
*/}}
{{- define "radgpt.credentials" -}}
{{- $list := list (dict "env" "RADGPT_DATABASE__URL" "path" "database.url" "value" .Values.database.url "key" "databaseUrl" "optional" false) -}}
{{- if include "radgpt.kafka.sasl" . -}}
{{- $list = append $list (dict "env" "RADGPT_KAFKA__SASL_PASSWORD" "path" "kafka.saslPassword" "value" .Values.kafka.saslPassword "key" "kafkaSaslPassword" "optional" false) -}}
{{- end -}}
{{- if or .Values.inference.apiKey .Values.secrets.existingSecret -}}
{{- $list = append $list (dict "env" "RADGPT_INFERENCE__API_KEY" "path" "inference.apiKey" "value" .Values.inference.apiKey "key" "inferenceApiKey" "optional" true) -}}
{{- end -}}
{{- if .Values.fhirSink.url -}}
{{- $list = append $list (dict "env" "RADGPT_FHIR_SINK__TOKEN" "path" "fhirSink.token" "value" .Values.fhirSink.token "key" "fhirSinkToken" "optional" true) -}}
{{- end -}}
{{- toJson $list -}}
{{- end -}}

{{/*
Return the env entries (secretKeyRef) of every configured credential of the service.
*/}}
{{- define "radgpt.credentialEnv" -}}
{{- range (include "radgpt.credentials" . | fromJsonArray) }}
{{- $ref := include "radgpt.secretKeyRef" (dict "root" $ "value" .value "key" .key "optional" .optional) }}
{{- if $ref }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      {{- $ref | nindent 6 }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Return "true" when the chart must create its own Secret (a literal credential, no existingSecret).
*/}}
{{- define "radgpt.createSecret" -}}
{{- if not .Values.secrets.existingSecret -}}
{{- range (include "radgpt.credentials" . | fromJsonArray) -}}
{{- if and .value (kindIs "string" .value) -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Return the KEDA Kafka scaler's sasl mode for the configured SASL mechanism.
*/}}
{{- define "radgpt.keda.sasl" -}}
{{- $modes := dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" -}}
{{- if include "radgpt.kafka.sasl" . -}}
{{- get $modes .Values.kafka.saslMechanism -}}
{{- else -}}
none
{{- end -}}
{{- end -}}

{{/*
Return the name of the KEDA TriggerAuthentication the ScaledObject uses, or nothing.
*/}}
{{- define "radgpt.keda.authenticationName" -}}
{{- if .Values.autoscaling.keda.authenticationRef -}}
{{- .Values.autoscaling.keda.authenticationRef -}}
{{- else if or (include "radgpt.kafka.sasl" .) .Values.kafka.tls.caSecret.name -}}
{{- include "radgpt.componentName" (dict "root" . "suffix" "kafka-auth") -}}
{{- end -}}
{{- end -}}

{{/*
Return the most replicas the service can be scaled to.
*/}}
{{- define "radgpt.maxReplicas" -}}
{{- if .Values.autoscaling.keda.enabled -}}
{{- .Values.autoscaling.keda.maxReplicaCount -}}
{{- else if .Values.autoscaling.hpa.enabled -}}
{{- .Values.autoscaling.hpa.maxReplicas -}}
{{- else -}}
{{- .Values.service.replicaCount -}}
{{- end -}}
{{- end -}}

{{/*
Validate the values: collect every problem, then fail once with all of them.
*/}}
{{- define "radgpt.validateValues" -}}
{{- $errors := list -}}
{{- $v := .Values -}}
{{- if not $v.kafka.bootstrapServers -}}
{{- $errors = append $errors "kafka.bootstrapServers: set the Kafka bootstrap servers (host:port[,host:port])" -}}
{{- end -}}
{{- if not (or $v.database.url $v.secrets.existingSecret) -}}
{{- $errors = append $errors "database.url: set the PostgreSQL URL (a literal postgresql+asyncpg://... or {secretName, secretKey}), or secrets.existingSecret" -}}
{{- end -}}
{{- if and (kindIs "string" $v.database.url) $v.database.url (not (hasPrefix "postgresql+asyncpg://" $v.database.url)) -}}
{{- $errors = append $errors "database.url: must start with postgresql+asyncpg://" -}}
{{- end -}}
{{- if include "radgpt.kafka.sasl" . -}}
{{- if not $v.kafka.saslMechanism -}}
{{- $errors = append $errors (printf "kafka.saslMechanism: required with securityProtocol %s" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if not $v.kafka.saslUsername -}}
{{- $errors = append $errors (printf "kafka.saslUsername: required with securityProtocol %s" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if not (or $v.kafka.saslPassword $v.secrets.existingSecret) -}}
{{- $errors = append $errors (printf "kafka.saslPassword: required with securityProtocol %s (a literal or {secretName, secretKey}), or secrets.existingSecret" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- end -}}
{{- if and $v.auth.trustDevKey (ne $v.environment "local") -}}
{{- $errors = append $errors (printf "auth.trustDevKey: only allowed with environment=local (environment is %s)" $v.environment) -}}
{{- end -}}
{{- if not $v.auth.trustDevKey -}}
{{- if not $v.auth.issuer -}}
{{- $errors = append $errors "auth.issuer: set the OIDC issuer of the reviewers' tokens" -}}
{{- end -}}
{{- if not (or $v.auth.jwksUrl $v.auth.publicKeys) -}}
{{- $errors = append $errors "auth.jwksUrl: set the OIDC provider's JWKS URL (or auth.publicKeys) so reviewers can sign in" -}}
{{- end -}}
{{- end -}}
{{- if $v.secrets.existingSecret -}}
{{- range (include "radgpt.credentials" . | fromJsonArray) -}}
{{- if and .value (kindIs "string" .value) -}}
{{- $errors = append $errors (printf "%s: a literal credential is ignored when secrets.existingSecret is set; remove it or give {secretName, secretKey}" .path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.autoscaling.keda.enabled $v.autoscaling.hpa.enabled -}}
{{- $errors = append $errors "autoscaling: enable either autoscaling.keda or autoscaling.hpa, not both" -}}
{{- end -}}
{{- $partitions := int $v.kafka.partitions -}}
{{- if $v.autoscaling.keda.enabled -}}
{{- if gt (int $v.autoscaling.keda.maxReplicaCount) $partitions -}}
{{- $errors = append $errors (printf "autoscaling.keda.maxReplicaCount (%d) exceeds kafka.partitions (%d): consumers beyond the partition count sit idle" (int $v.autoscaling.keda.maxReplicaCount) $partitions) -}}
{{- end -}}
{{- if gt (int $v.autoscaling.keda.minReplicaCount) (int $v.autoscaling.keda.maxReplicaCount) -}}
{{- $errors = append $errors "autoscaling.keda.minReplicaCount exceeds autoscaling.keda.maxReplicaCount" -}}
{{- end -}}
{{- else if $v.autoscaling.hpa.enabled -}}
{{- if gt (int $v.autoscaling.hpa.maxReplicas) $partitions -}}
{{- $errors = append $errors (printf "autoscaling.hpa.maxReplicas (%d) exceeds kafka.partitions (%d): consumers beyond the partition count sit idle" (int $v.autoscaling.hpa.maxReplicas) $partitions) -}}
{{- end -}}
{{- if gt (int $v.autoscaling.hpa.minReplicas) (int $v.autoscaling.hpa.maxReplicas) -}}
{{- $errors = append $errors "autoscaling.hpa.minReplicas exceeds autoscaling.hpa.maxReplicas" -}}
{{- end -}}
{{- else if gt (int $v.service.replicaCount) $partitions -}}
{{- $errors = append $errors (printf "service.replicaCount (%d) exceeds kafka.partitions (%d): consumers beyond the partition count sit idle" (int $v.service.replicaCount) $partitions) -}}
{{- end -}}
{{- if ge (float64 $v.pipeline.drainTimeoutS) (float64 $v.service.terminationGracePeriodSeconds) -}}
{{- $errors = append $errors (printf "pipeline.drainTimeoutS (%v) must be below service.terminationGracePeriodSeconds (%v): in-flight reports need time to finish and commit" $v.pipeline.drainTimeoutS $v.service.terminationGracePeriodSeconds) -}}
{{- end -}}
{{- $metadata := $v.inference.adapterMetadata -}}
{{- if and (eq $metadata.source "shipped") $v.inference.verifyAdapter (ne $v.inference.adapter "radiology") -}}
{{- $errors = append $errors (printf "inference.adapterMetadata.source: the image ships only the radiology adapter's canary; for %s use volume or configMap" $v.inference.adapter) -}}
{{- end -}}
{{- if eq $metadata.source "volume" -}}
{{- if not (include "radgpt.inference.adapterDir" .) -}}
{{- $errors = append $errors (printf "inference.adapterMetadata.source=volume: inference.adapter (%s) must be listed in modelServer.adapters" $v.inference.adapter) -}}
{{- end -}}
{{- if not (or $v.modelServer.storage.existingClaim (and $v.modelServer.enabled $v.modelServer.storage.create.enabled)) -}}
{{- $errors = append $errors "inference.adapterMetadata.source=volume: needs modelServer.storage.existingClaim (or a created claim)" -}}
{{- end -}}
{{- end -}}
{{- if and (eq $metadata.source "configMap") (not $metadata.configMap) -}}
{{- $errors = append $errors "inference.adapterMetadata.configMap: name the ConfigMap with radgpt-adapter.json" -}}
{{- end -}}
{{- if $v.modelServer.enabled -}}
{{- if and (not $v.modelServer.storage.existingClaim) (not $v.modelServer.storage.create.enabled) -}}
{{- $errors = append $errors "modelServer.storage: set existingClaim (a PVC with the base model and adapters) or create.enabled" -}}
{{- end -}}
{{- $names := list -}}
{{- range $v.modelServer.adapters -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- if not (has $v.inference.adapter $names) -}}
{{- $errors = append $errors (printf "inference.adapter (%s) is not loaded by the model server: add it to modelServer.adapters (%s); TGI would silently answer with the base model" $v.inference.adapter (join ", " $names)) -}}
{{- end -}}
{{- if ne (len $names) (len (uniq $names)) -}}
{{- $errors = append $errors "modelServer.adapters: adapter names must be unique" -}}
{{- end -}}
{{- if and (eq $v.modelServer.engine "vllm") (eq (include "radgpt.inference.backend" .) "tgi") -}}
{{- $errors = append $errors "inference.backend: vLLM has no TGI /generate route; use openai with modelServer.engine=vllm" -}}
{{- end -}}
{{- if and (eq $v.modelServer.engine "tgi") (le (int $v.modelServer.terminationGracePeriodSeconds) (int $v.modelServer.tgi.gracefulTerminationTimeout)) -}}
{{- $errors = append $errors (printf "modelServer.terminationGracePeriodSeconds (%d) must exceed modelServer.tgi.gracefulTerminationTimeout (%d)" (int $v.modelServer.terminationGracePeriodSeconds) (int $v.modelServer.tgi.gracefulTerminationTimeout)) -}}
{{- end -}}
{{- if lt (int $v.modelServer.gpus) 1 -}}
{{- $errors = append $errors "modelServer.gpus: at least 1" -}}
{{- end -}}
{{- else -}}
{{- if not $v.inference.url -}}
{{- $errors = append $errors "inference.url: required when modelServer.enabled=false (the URL of your TGI / vLLM server)" -}}
{{- end -}}
{{- if not $v.inference.backend -}}
{{- $errors = append $errors "inference.backend: required when modelServer.enabled=false (tgi or openai)" -}}
{{- end -}}
{{- end -}}
{{- if $v.networkPolicy.enabled -}}
{{- if not $v.networkPolicy.egress.kafka.to -}}
{{- $errors = append $errors "networkPolicy.egress.kafka.to: list the Kafka brokers (ipBlock / podSelector / namespaceSelector) when networkPolicy.enabled" -}}
{{- end -}}
{{- if not $v.networkPolicy.egress.database.to -}}
{{- $errors = append $errors "networkPolicy.egress.database.to: list PostgreSQL (ipBlock / podSelector / namespaceSelector) when networkPolicy.enabled" -}}
{{- end -}}
{{- if and (not $v.modelServer.enabled) (not $v.networkPolicy.egress.modelServer.to) -}}
{{- $errors = append $errors "networkPolicy.egress.modelServer.to: list the external model server when networkPolicy.enabled and modelServer.enabled=false" -}}
{{- end -}}
{{- end -}}
{{- if and $v.ingress.enabled (not $v.ingress.hosts) -}}
{{- $errors = append $errors "ingress.hosts: at least one host when ingress.enabled" -}}
{{- end -}}
{{- if $errors -}}
{{- printf "\nVALUES VALIDATION:\n  - %s" (join "\n  - " $errors) | fail -}}
{{- end -}}
{{- end -}}

{{/*
Return the warnings about insecure or risky settings as a JSON list (printed by NOTES.txt).
*/}}
{{- define "radgpt.insecureWarnings" -}}
{{- $warnings := list -}}
{{- $v := .Values -}}
{{- if not (include "radgpt.kafka.tls" .) -}}
{{- $warnings = append $warnings (printf "Kafka traffic is not encrypted (kafka.securityProtocol=%s): HL7/FHIR messages carry patient data. Use SSL or SASL_SSL." $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if $v.auth.trustDevKey -}}
{{- $warnings = append $warnings "auth.trustDevKey=true: anyone with the development key can approve reports. Never outside a local demo." -}}
{{- end -}}
{{- if and $v.ingress.enabled (not $v.ingress.tls) -}}
{{- $warnings = append $warnings "The Ingress has no TLS (ingress.tls): review pages and bearer tokens travel in clear text." -}}
{{- end -}}
{{- if not $v.kafka.tls.checkHostname -}}
{{- $warnings = append $warnings "kafka.tls.checkHostname=false: broker certificates are not matched to host names." -}}
{{- end -}}
{{- if not $v.networkPolicy.enabled -}}
{{- $warnings = append $warnings "networkPolicy.enabled=false: pods may reach any address (the model server could phone home)." -}}
{{- end -}}
{{- if and $v.autoscaling.keda.enabled (eq (int $v.autoscaling.keda.minReplicaCount) 0) -}}
{{- $warnings = append $warnings "autoscaling.keda.minReplicaCount=0: with no committed offsets KEDA may never scale up, and the review API has no pod." -}}
{{- end -}}
{{- if and $v.modelServer.enabled (eq $v.modelServer.engine "tgi") -}}
{{- $inflight := mul (int (include "radgpt.maxReplicas" .)) (int $v.inference.maxConcurrency) -}}
{{- $capacity := mul (int $v.modelServer.replicaCount) (int $v.modelServer.tgi.maxConcurrentRequests) -}}
{{- if gt $inflight $capacity -}}
{{- $warnings = append $warnings (printf "Up to %d requests in flight (max service replicas x inference.maxConcurrency) but TGI admits %d (replicas x maxConcurrentRequests): expect 429s; scale the model server, not the consumers." $inflight $capacity) -}}
{{- end -}}
{{- end -}}
{{- toJson $warnings -}}
{{- end -}}
