# OIDC sign-in settings (provider-agnostic). The client secret comes from $DAGCTL_OIDC_CLIENT_SECRET when
# set (it is then kept in this unit's state as a sensitive output); leave it unset where External Secrets
# provides oidc-client-secret (production).
#
# Common to every env and region: included by each <env>/<region>/oidc/terragrunt.hcl and evaluated in that
# unit's context (find_in_parent_folders(): the unit's env.hcl).

locals {
  env = read_terragrunt_config(find_in_parent_folders("env.hcl")).locals
}

terraform {
  source = "${get_terragrunt_dir()}/../../../../modules//oidc"
}

inputs = {
  enabled       = local.env.oidc_enabled
  issuer        = local.env.oidc_issuer
  client_id     = local.env.oidc_client_id
  role_map      = local.env.oidc_role_map
  client_secret = get_env("DAGCTL_OIDC_CLIENT_SECRET", "") == "" ? null : get_env("DAGCTL_OIDC_CLIENT_SECRET")
}
