# The staging environment: what differs from production. Read by root.hcl and by each unit
# (`read_terragrunt_config(find_in_parent_folders("env.hcl")).locals`). Plain values only.

locals {
  env       = "staging"
  namespace = "dagctl-staging"

  # The dagctl image, by digest only. Replace with the digest your build printed (the registry's answer to the
  # push, or `docker buildx imagetools inspect <image>`); this all-zero placeholder is a valid sha256 digest but
  # names no image, so pods would not start with it.
  image_repository = "ghcr.io/dagctl/dagctl"
  image_digest     = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

  # Chart versions, exact. Staging takes a new version first; production follows once it has run here.
  dagctl_chart_version     = "0.1.0"
  cnpg_chart_version       = "0.29.0"
  chaos_mesh_chart_version = "2.8.3"

  scheduler_replicas    = 1
  webserver_replicas    = 1
  postgres_instances    = 1
  postgres_storage_size = "10Gi"
  chaos_mesh_enabled    = true

  # Who may do what in the namespace (groups of your identity provider, as the cluster's authenticator sees them).
  admin_groups   = ["dagctl-admins"]
  view_groups    = ["dagctl-developers"]
  resource_quota = { "requests.cpu" = "16", "requests.memory" = "32Gi", "pods" = "300" }

  # OIDC sign-in (any provider). The client secret is read from $DAGCTL_OIDC_CLIENT_SECRET by the oidc unit.
  oidc_enabled   = true
  oidc_issuer    = "https://login.example.com/realms/dagctl"
  oidc_client_id = "dagctl-staging"
  oidc_role_map = {
    "dagctl-admins"     = "Admin"
    "dagctl-operators"  = "Op"
    "dagctl-developers" = "User"
  }

  # No External Secrets store in staging: the secrets unit writes the Secret (write-only) and generates
  # secret-key and fernet-key once (kept in state; see terraform/modules/secrets/main.tf).
  external_secret_store      = null
  external_secret_remote_key = ""
}
