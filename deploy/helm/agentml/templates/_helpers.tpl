{{/*
Names. Kubernetes names are at most 63 characters; KubeRay appends "-head-svc" and pod suffixes to the
RayCluster's name, so that one is kept to 40.
*/}}
{{- define "agentml.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentml.fullname" -}}
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

{{- define "agentml.rayClusterName" -}}
{{- printf "%s-ray" (include "agentml.fullname" .) | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/* The head Service KubeRay creates for a RayCluster is "<cluster>-head-svc". */}}
{{- define "agentml.rayHeadService" -}}
{{- printf "%s-head-svc" (include "agentml.rayClusterName" .) }}
{{- end }}

{{- define "agentml.rayAddress" -}}
{{- printf "http://%s.%s.svc:%d" (include "agentml.rayHeadService" .) .Release.Namespace (int .Values.ray.dashboardPort) }}
{{- end }}

{{- define "agentml.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentml.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret names: always references to Secrets created outside the chart. */}}
{{- define "agentml.rayAuthSecret" -}}
{{- default (printf "%s-ray-auth" (include "agentml.fullname" .)) .Values.ray.auth.existingSecret }}
{{- end }}

{{- define "agentml.apiTokensSecret" -}}
{{- default (printf "%s-api-tokens" (include "agentml.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "agentml.artifactsClaim" -}}
{{- default (printf "%s-artifacts" (include "agentml.fullname" .)) .Values.artifacts.persistence.existingClaim }}
{{- end }}

{{- define "agentml.stateClaim" -}}
{{- default (printf "%s-state" (include "agentml.fullname" .)) .Values.runStore.sqlite.persistence.existingClaim }}
{{- end }}

{{- define "agentml.sqliteOnVolume" -}}
{{- if and (eq .Values.runStore.type "sqlite") .Values.runStore.sqlite.persistence.enabled }}true{{ end }}
{{- end }}

{{/* Labels */}}
{{- define "agentml.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentml.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentml.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentml.labels" -}}
helm.sh/chart: {{ include "agentml.chart" . }}
{{ include "agentml.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentml
{{- end }}

{{/* Images */}}
{{- define "agentml.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "agentml.gpuImage" -}}
{{- $repo := default .Values.image.repository .Values.gpuImage.repository }}
{{- printf "%s:%s" $repo (default (printf "%s-cuda" .Chart.AppVersion) .Values.gpuImage.tag) }}
{{- end }}

{{/* Fixed paths inside every pod. */}}
{{- define "agentml.policiesDir" -}}/etc/agentml/policies{{- end }}
{{- define "agentml.tokensDir" -}}/etc/agentml/tokens{{- end }}
{{- define "agentml.artifactsDir" -}}/var/lib/agentml/artifacts{{- end }}
{{- define "agentml.stateDir" -}}/var/lib/agentml/state{{- end }}

{{- define "agentml.runStoreEnv" -}}
- name: AGENTML_RUN_STORE_URL
{{- if eq .Values.runStore.type "postgresql" }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.runStore.postgresql.existingSecret }}
      key: {{ .Values.runStore.postgresql.key }}
{{- else }}
  value: {{ printf "sqlite:///%s/runs.db" (include "agentml.stateDir" .) | quote }}
{{- end }}
{{- end }}

{{/* Explicit either way: Ray turns token auth on by default for every cluster from 2.61. */}}
{{- define "agentml.rayAuthEnv" -}}
{{- if .Values.ray.auth.enabled }}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "agentml.rayAuthSecret" . }}
      key: {{ .Values.ray.auth.key }}
{{- else }}
- name: RAY_AUTH_MODE
  value: disabled
{{- end }}
{{- end }}

{{/*
Environment shared by the API and every Ray container: the same settings wherever a plan step runs.
The run store URL reaches Ray pods only when it is PostgreSQL: a SQLite file lives on the API pod alone.
*/}}
{{- define "agentml.commonEnv" -}}
# The root filesystem is read-only: everything that caches under $HOME (Ray, matplotlib) goes to /tmp.
- name: HOME
  value: /tmp
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
# LiteLLM would otherwise try to download its price map at import time.
- name: LITELLM_LOCAL_MODEL_COST_MAP
  value: "True"
- name: AGENTML_WAREHOUSE
  value: {{ .Values.config.warehouse | quote }}
- name: AGENTML_POLICIES
  value: {{ printf "%s/policies.yaml" (include "agentml.policiesDir" .) | quote }}
- name: AGENTML_ARTIFACTS
  value: {{ default (include "agentml.artifactsDir" .) .Values.artifacts.uri | quote }}
{{- if not .Values.artifacts.uri }}
# The artifacts volume is mounted at the same path in every pod: agentml accepts a folder on a multi-node cluster
# only when told so (a pod-local folder would break Train/Tune checkpoints on other nodes).
- name: AGENTML_ARTIFACTS_SHARED
  value: "true"
{{- end }}
{{- with .Values.config.llmModel }}
- name: AGENTML_LLM_MODEL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.compute }}
- name: AGENTML_NUM_WORKERS
  value: {{ .numWorkers | quote }}
- name: AGENTML_CPUS_PER_WORKER
  value: {{ .cpusPerWorker | quote }}
- name: AGENTML_USE_GPU
  value: {{ .useGpu | quote }}
- name: AGENTML_MAX_WORKERS
  value: {{ .maxWorkers | quote }}
- name: AGENTML_MAX_CPUS_PER_WORKER
  value: {{ .maxCpusPerWorker | quote }}
{{- end }}
{{- /* A GPU group that can scale up: GPUs asked for when none is up yet bring one (KubeRay autoscaler). */}}
{{- if .Values.ray.gpuWorkers.enabled }}
- name: AGENTML_GPU_AUTOSCALING
  value: "true"
{{- end }}
{{- include "agentml.rayAuthEnv" . }}
{{- with .Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "agentml.rayEnv" -}}
{{ include "agentml.commonEnv" . }}
{{- if eq .Values.runStore.type "postgresql" }}
{{ include "agentml.runStoreEnv" . }}
{{- end }}
{{- end }}

{{- /* The object store's credentials (and endpoint, region) in every pod: the API, the Ray head (job drivers, Tune's
experiment state) and every worker (Train checkpoints) read and write the same bucket. */}}
{{- define "agentml.commonEnvFrom" -}}
{{- with .Values.artifacts.existingSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{/* Volumes every pod mounts: writable /tmp, the policies, the artifact store, the warehouse. */}}
{{- define "agentml.commonVolumes" -}}
- name: tmp
  emptyDir: {}
- name: policies
  configMap:
    name: {{ include "agentml.fullname" . }}-policies
{{- if not .Values.artifacts.uri }}
- name: artifacts
  persistentVolumeClaim:
    claimName: {{ include "agentml.artifactsClaim" . }}
{{- end }}
{{- with .Values.warehouse.existingClaim }}
- name: warehouse
  persistentVolumeClaim:
    claimName: {{ . }}
    readOnly: true
{{- end }}
{{- end }}

{{- define "agentml.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: policies
  mountPath: {{ include "agentml.policiesDir" . }}
  readOnly: true
{{- if not .Values.artifacts.uri }}
- name: artifacts
  mountPath: {{ include "agentml.artifactsDir" . }}
{{- end }}
{{- if .Values.warehouse.existingClaim }}
- name: warehouse
  mountPath: {{ .Values.warehouse.mountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Ray pods: the common volumes plus /dev/shm for the object store (args: list root shmSize). */}}
{{- define "agentml.rayVolumes" -}}
{{- include "agentml.commonVolumes" (index . 0) }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ index . 1 }}
{{- end }}

{{- define "agentml.rayVolumeMounts" -}}
{{ include "agentml.commonVolumeMounts" . }}
- name: dshm
  mountPath: /dev/shm
{{- end }}
