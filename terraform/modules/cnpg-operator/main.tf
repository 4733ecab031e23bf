# The CloudNativePG operator and its CRDs, cluster-wide. A module of its own (and a unit applied before
# `postgres`) because `kubernetes_manifest` needs the `Cluster` CRD to exist when the postgres unit is planned.

resource "helm_release" "cnpg" {
  name             = "cnpg"
  namespace        = var.namespace
  create_namespace = true
  repository       = var.chart_repository
  chart            = "cloudnative-pg"
  version          = var.chart_version
  atomic           = true
  wait             = true
  timeout          = 600

  values = [yamlencode(merge({ crds = { create = true } }, var.values))]
}
