{{/*
stratus.fullname is the name of the release's objects: the release name,
with the chart's name appended unless the release name holds it; at most 63
characters (a DNS-1123 label; pod names, which are also the servers' node
names, add a hash to it).
*/}}
{{- define "stratus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* stratus.selectorLabels select the server's pods (Deployment, Service, PDB). */}}
{{- define "stratus.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/* stratus.labels go on every object the chart makes. */}}
{{- define "stratus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "stratus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* stratus.serviceAccountName is the server's ServiceAccount. */}}
{{- define "stratus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stratus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: give the ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* stratus.image is the server's image reference. */}}
{{- define "stratus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* stratus.tokenSecret is the Secret holding the API token. */}}
{{- define "stratus.tokenSecret" -}}
{{- default (printf "%s-token" (include "stratus.fullname" . | trunc 57 | trimSuffix "-")) .Values.token.existingSecret -}}
{{- end -}}

{{/*
stratus.nodesRole names the ClusterRole (and its binding) that reads nodes:
cluster-wide, so the namespace is part of it.
*/}}
{{- define "stratus.nodesRole" -}}
{{- printf "%s-%s-nodes" .Release.Namespace (include "stratus.fullname" .) | trunc 253 -}}
{{- end -}}

{{/*
stratus.validate fails the render on values that do not go together, with a
message naming what to give. values.schema.json refuses them first; this is
for renders that skip the schema (--skip-schema-validation).
*/}}
{{- define "stratus.validate" -}}
{{- if gt (int .Values.replicas) 1 -}}
{{- if not .Values.store.url -}}
{{- fail "replicas > 1 needs store.url: the servers share a PostgreSQL database (postgres://USER@HOST/DB); or set replicas: 1" -}}
{{- end -}}
{{- if not .Values.nats.url -}}
{{- fail "replicas > 1 needs nats.url: the servers share a NATS cluster with JetStream (nats://HOST:4222,...); or set replicas: 1" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.store.url (not .Values.nats.url) -}}
{{- fail "store.url (PostgreSQL) needs nats.url: servers on PostgreSQL share a NATS cluster" -}}
{{- end -}}
{{- if and .Values.nats.credentials.existingSecret (not .Values.nats.url) -}}
{{- fail "nats.credentials.existingSecret is for an external NATS server: give nats.url too" -}}
{{- end -}}
{{- if and .Values.store.passwordSecret.name (not .Values.store.url) -}}
{{- fail "store.passwordSecret.name is for PostgreSQL: give store.url too" -}}
{{- end -}}
{{- end -}}

{{/*
stratus.dnsEgress is the egress rule to the cluster's DNS: the pods labelled
k8s-app=kube-dns of any namespace, on port 53 over UDP and TCP.
*/}}
{{- define "stratus.dnsEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}
