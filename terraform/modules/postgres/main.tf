# PostgreSQL for dagctl: a CloudNativePG Cluster, or an external database's URL put into a Secret. Either way the
# output is the name and key of a Secret holding the database URL, never the URL itself.
#
# What lands in state: mode = cnpg, nothing secret (the operator makes the app user's password inside the
# cluster, in the Secret <cluster_name>-app); mode = external, nothing secret either (the URL is written through
# the write-only `data_wo`; only `external_secret_revision` is stored).

locals {
  cnpg = var.mode == "cnpg"
  cluster_spec = merge(
    {
      instances             = var.instances
      enableSuperuserAccess = false
      storage = merge(
        { size = var.storage_size },
        var.storage_class == null ? {} : { storageClass = var.storage_class },
      )
      bootstrap = {
        initdb = {
          database = var.database
          owner    = var.database
        }
      }
    },
    var.postgres_image == null ? {} : { imageName = var.postgres_image },
  )
}

resource "kubernetes_manifest" "cluster" {
  count = local.cnpg ? 1 : 0

  manifest = {
    apiVersion = "postgresql.cnpg.io/v1"
    kind       = "Cluster"
    metadata = {
      name      = var.cluster_name
      namespace = var.namespace
      labels    = { "app.kubernetes.io/part-of" = "dagctl", "app.kubernetes.io/managed-by" = "opentofu" }
    }
    spec = local.cluster_spec
  }

  # The app Secret exists once the Cluster is Ready; the secrets unit reads it after this apply.
  wait {
    condition {
      type   = "Ready"
      status = "True"
    }
  }
  timeouts {
    create = var.wait_timeout
    update = var.wait_timeout
  }
}

resource "kubernetes_secret_v1" "external" {
  count = local.cnpg ? 0 : 1

  metadata {
    name      = "${var.cluster_name}-external"
    namespace = var.namespace
    labels    = { "app.kubernetes.io/part-of" = "dagctl", "app.kubernetes.io/managed-by" = "opentofu" }
  }
  data_wo          = { uri = var.external_database_url }
  data_wo_revision = var.external_secret_revision

  lifecycle {
    precondition {
      condition     = var.external_database_url != null
      error_message = "mode = external needs external_database_url (TF_VAR_external_database_url)."
    }
  }
}
