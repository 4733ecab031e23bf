# Chaos Mesh, optional (count on `enabled`): faults for test networks that run as pods in the cluster.

locals {
  sockets = {
    containerd = "/run/containerd/containerd.sock"
    crio       = "/var/run/crio/crio.sock"
    docker     = "/var/run/docker.sock"
  }
  values = merge(
    {
      chaosDaemon = {
        runtime    = var.container_runtime
        socketPath = local.sockets[var.container_runtime]
      }
      controllerManager = { enableFilterNamespace = length(var.target_namespaces) > 0 }
      # The dashboard asks each user for a token of their own instead of acting as its ServiceAccount.
      dashboard = { securityMode = true }
    },
    var.values,
  )
}

resource "helm_release" "chaos_mesh" {
  count = var.enabled ? 1 : 0

  name             = "chaos-mesh"
  namespace        = var.namespace
  create_namespace = true
  repository       = var.chart_repository
  chart            = "chaos-mesh"
  version          = var.chart_version
  atomic           = true
  wait             = true
  timeout          = 600

  values = [yamlencode(local.values)]
}
