# The release's Secret `dagctl` with the keys the chart reads: database-url, secret-key, fernet-key and, with
# OIDC, oidc-client-secret (deploy/helm/dagctl/templates/_helpers.tpl, webserver.yaml).
#
# Two ways, and what each leaves in OpenTofu's state:
# - With external_secret_store (preferred): an ExternalSecret; External Secrets copies the remote secret into
#   the Secret inside the cluster. No secret value passes through OpenTofu; the state holds the ExternalSecret
#   object only. With database_url_secret set, database-url is read in-cluster from that Secret through a
#   namespaced SecretStore of External Secrets' kubernetes provider (allowed to get that one Secret only).
# - Without: a kubernetes_secret_v1 written with the write-only `data_wo`, so the Secret's data is NOT in state.
#   But in state are: the generated secret-key and fernet-key (random_bytes, sensitive) when not given, and the
#   database URL Secret read by the data source below (its data, sensitive) when database_url_secret is set.
#   The oidc module's state holds the client secret as a sensitive output. Values given as variables
#   (TF_VAR_secret_key, ...) are not stored. Protect the state backend accordingly.

locals {
  use_eso          = var.external_secret_store != null
  labels           = { "app.kubernetes.io/part-of" = "dagctl", "app.kubernetes.io/managed-by" = "opentofu" }
  in_cluster_store = "${var.name}-in-cluster"
  read_db_secret   = var.database_url_secret != null
  # The oidc module outputs "" rather than null for "no secret".
  oidc_secret_given = var.oidc_enabled && try(length(var.oidc_client_secret) > 0, false)
}

# ---- External Secrets -------------------------------------------------------------------------------------

resource "kubernetes_service_account_v1" "eso_reader" {
  count = local.use_eso && local.read_db_secret ? 1 : 0

  metadata {
    name      = "${var.name}-secret-reader"
    namespace = var.namespace
    labels    = local.labels
  }
  automount_service_account_token = false
}

resource "kubernetes_role_v1" "eso_reader" {
  count = local.use_eso && local.read_db_secret ? 1 : 0

  metadata {
    name      = "${var.name}-secret-reader"
    namespace = var.namespace
    labels    = local.labels
  }
  rule {
    api_groups     = [""]
    resources      = ["secrets"]
    resource_names = [var.database_url_secret.name]
    verbs          = ["get"]
  }
}

resource "kubernetes_role_binding_v1" "eso_reader" {
  count = local.use_eso && local.read_db_secret ? 1 : 0

  metadata {
    name      = "${var.name}-secret-reader"
    namespace = var.namespace
    labels    = local.labels
  }
  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role_v1.eso_reader[0].metadata[0].name
  }
  subject {
    kind      = "ServiceAccount"
    name      = kubernetes_service_account_v1.eso_reader[0].metadata[0].name
    namespace = var.namespace
  }
}

resource "kubernetes_manifest" "in_cluster_store" {
  count = local.use_eso && local.read_db_secret ? 1 : 0

  manifest = {
    apiVersion = "external-secrets.io/v1"
    kind       = "SecretStore"
    metadata   = { name = local.in_cluster_store, namespace = var.namespace, labels = local.labels }
    spec = {
      provider = {
        kubernetes = {
          remoteNamespace = var.namespace
          server = {
            url        = "https://kubernetes.default.svc"
            caProvider = { type = "ConfigMap", name = "kube-root-ca.crt", key = "ca.crt" }
          }
          auth = { serviceAccount = { name = kubernetes_service_account_v1.eso_reader[0].metadata[0].name } }
        }
      }
    }
  }
}

resource "kubernetes_manifest" "external_secret" {
  count = local.use_eso ? 1 : 0

  manifest = {
    apiVersion = "external-secrets.io/v1"
    kind       = "ExternalSecret"
    metadata   = { name = var.name, namespace = var.namespace, labels = local.labels }
    spec = merge(
      {
        refreshInterval = var.external_secret_refresh_interval
        secretStoreRef  = { kind = var.external_secret_store.kind, name = var.external_secret_store.name }
        target          = { name = var.name, creationPolicy = "Owner" }
        dataFrom        = [{ extract = { key = var.external_secret_remote_key } }]
      },
      local.read_db_secret ? {
        data = [{
          secretKey = "database-url"
          remoteRef = { key = var.database_url_secret.name, property = var.database_url_secret.key }
          sourceRef = { storeRef = { kind = "SecretStore", name = kubernetes_manifest.in_cluster_store[0].manifest.metadata.name } }
        }]
      } : {},
    )
  }

  lifecycle {
    precondition {
      condition     = var.external_secret_remote_key != ""
      error_message = "external_secret_store is set: external_secret_remote_key must name the remote secret."
    }
  }
}

# ---- A Secret written by OpenTofu -------------------------------------------------------------------------

data "kubernetes_secret_v1" "database_url" {
  count = !local.use_eso && local.read_db_secret ? 1 : 0

  metadata {
    name      = var.database_url_secret.name
    namespace = var.namespace
  }
}

resource "random_bytes" "secret_key" {
  count  = !local.use_eso && var.secret_key == null ? 1 : 0
  length = 32
}

resource "random_bytes" "fernet_key" {
  count  = !local.use_eso && var.fernet_key == null ? 1 : 0
  length = 32
}

locals {
  database_url = local.use_eso ? null : (
    local.read_db_secret ? try(data.kubernetes_secret_v1.database_url[0].data[var.database_url_secret.key], null) : var.database_url
  )
  secret_key = local.use_eso ? null : coalesce(var.secret_key, try(random_bytes.secret_key[0].hex, null))
  # Fernet keys are URL-safe base64; random_bytes gives the standard alphabet.
  fernet_key = local.use_eso ? null : coalesce(
    var.fernet_key,
    try(replace(replace(random_bytes.fernet_key[0].base64, "+", "-"), "/", "_"), null),
  )
  secret_data = local.use_eso ? {} : merge(
    {
      "database-url" = local.database_url
      "secret-key"   = local.secret_key
      "fernet-key"   = local.fernet_key
    },
    local.oidc_secret_given ? { "oidc-client-secret" = var.oidc_client_secret } : {},
  )
}

resource "kubernetes_secret_v1" "this" {
  count = local.use_eso ? 0 : 1

  metadata {
    name      = var.name
    namespace = var.namespace
    labels    = local.labels
  }
  type             = "Opaque"
  data_wo          = local.secret_data
  data_wo_revision = var.revision

  lifecycle {
    precondition {
      condition     = local.database_url != null
      error_message = "No database URL: give database_url_secret (the postgres module's outputs; the Secret must exist), or database_url."
    }
    precondition {
      condition     = !var.oidc_enabled || local.oidc_secret_given
      error_message = "OIDC is enabled but no oidc_client_secret was given (or set external_secret_store)."
    }
  }
}
