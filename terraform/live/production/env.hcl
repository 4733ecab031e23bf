# The production environment. Read by root.hcl and by each unit
# (`read_terragrunt_config(find_in_parent_folders("env.hcl")).locals`). Plain values only.

locals {
  env       = "production"
  namespace = "dagctl"

  # The dagctl image, by digest only. Replace with the digest your build printed (the registry's answer to the
  # push, or `docker buildx imagetools inspect <image>`); this all-zero placeholder is a valid sha256 digest but
  # names no image, so pods would not start with it. Promote the digest that ran in staging.
  image_repository = "ghcr.io/dagctl/dagctl"
  image_digest     = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

  # Chart versions, exact (the versions staging ran).
  dagctl_chart_version     = "0.1.0"
  cnpg_chart_version       = "0.29.0"
  chaos_mesh_chart_version = "2.8.3"

  scheduler_replicas    = 2
  webserver_replicas    = 2
  postgres_instances    = 3
  postgres_storage_size = "50Gi"
  chaos_mesh_enabled    = false

  admin_groups   = ["dagctl-admins"]
  view_groups    = ["dagctl-operators"]
  resource_quota = { "requests.cpu" = "32", "requests.memory" = "64Gi", "pods" = "600" }

  oidc_enabled   = true
  oidc_issuer    = "https://login.example.com/realms/dagctl"
  oidc_client_id = "dagctl"
  oidc_role_map = {
    "dagctl-admins"    = "Admin"
    "dagctl-operators" = "Op"
  }

  # External Secrets fills the Secret: the remote secret <external_secret_remote_key> holds secret-key,
  # fernet-key and oidc-client-secret; database-url is read in-cluster from CloudNativePG's app Secret. No secret
  # value passes through OpenTofu or its state. The store must exist (External Secrets installed, its CRDs too).
  external_secret_store      = { kind = "ClusterSecretStore", name = "vault" }
  external_secret_remote_key = "dagctl/production"
}
