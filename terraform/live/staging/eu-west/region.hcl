# The eu-west region of staging: one Kubernetes cluster, reached through one kube context. Plain values only.

locals {
  region = "eu-west"

  # The kube context (in $KUBECONFIG, default ~/.kube/config) of this region's cluster: every unit below uses
  # it, and so does the state backend.
  kube_context    = "staging-eu-west"
  state_namespace = "tofu-state"

  # The webserver's public host name, and how the cluster serves Ingresses and volumes.
  hostname      = "dagctl.eu-west.staging.example.com"
  ingress_class = "nginx"
  tls_secret    = "dagctl-tls"
  storage_class = null

  # The nodes' container runtime (for Chaos Mesh's daemon): containerd, crio or docker.
  container_runtime = "containerd"
}
