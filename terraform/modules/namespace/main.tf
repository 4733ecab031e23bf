# The namespace dagctl lives in, and who may do what in it. The release's own RBAC (the scheduler's Role on pods)
# comes with the Helm chart; this module binds people's groups and sets the namespace's guard rails.

locals {
  labels = merge(var.labels, {
    "app.kubernetes.io/managed-by"       = "opentofu"
    "app.kubernetes.io/part-of"          = "dagctl"
    "pod-security.kubernetes.io/enforce" = var.pod_security_level
    "pod-security.kubernetes.io/warn"    = "restricted"
  })
  bindings = merge(
    { for group in var.admin_groups : "admin-${group}" => { role = "admin", group = group } },
    { for group in var.view_groups : "view-${group}" => { role = "view", group = group } },
  )
}

resource "kubernetes_namespace_v1" "this" {
  metadata {
    name   = var.name
    labels = local.labels
  }
}

resource "kubernetes_role_binding_v1" "group" {
  for_each = local.bindings

  metadata {
    # A group name may hold characters a Kubernetes name may not: a hash keeps the name valid and unique.
    name      = "dagctl-${each.value.role}-${substr(sha256(each.value.group), 0, 10)}"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels    = { "app.kubernetes.io/managed-by" = "opentofu" }
    annotations = {
      "dagctl.io/group" = each.value.group
    }
  }
  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "ClusterRole"
    name      = each.value.role
  }
  subject {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Group"
    name      = each.value.group
  }
}

resource "kubernetes_resource_quota_v1" "this" {
  count = var.resource_quota == null ? 0 : 1

  metadata {
    name      = "dagctl"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  spec {
    hard = var.resource_quota
  }
}

resource "kubernetes_limit_range_v1" "this" {
  count = var.limit_range == null ? 0 : 1

  metadata {
    name      = "dagctl"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  spec {
    limit {
      type            = "Container"
      default_request = var.limit_range.default_request
      default         = var.limit_range.default_limit
    }
  }
}
