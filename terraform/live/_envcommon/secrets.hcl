# The release's Secret `dagctl` (database-url, secret-key, fernet-key, oidc-client-secret): an ExternalSecret
# where env.hcl names a store, else written by OpenTofu (write-only). See terraform/modules/secrets/main.tf for
# what lands in state.
#
# Common to every env and region: included by each <env>/<region>/secrets/terragrunt.hcl and evaluated in that
# unit's context (get_terragrunt_dir(), find_in_parent_folders(): the unit's folder and its env.hcl/region.hcl).

locals {
  env    = read_terragrunt_config(find_in_parent_folders("env.hcl")).locals
  region = read_terragrunt_config(find_in_parent_folders("region.hcl")).locals
}

terraform {
  source = "${get_terragrunt_dir()}/../../../../modules//secrets"
}

dependency "namespace" {
  config_path = "${get_terragrunt_dir()}/../namespace"

  mock_outputs                            = { name = "dagctl-mock" }
  mock_outputs_allowed_terraform_commands = ["init", "validate", "plan"]
  mock_outputs_merge_strategy_with_state  = "shallow"
}

dependency "postgres" {
  config_path = "${get_terragrunt_dir()}/../postgres"

  mock_outputs                            = { database_url_secret_name = "dagctl-db-app", database_url_secret_key = "uri", host = "dagctl-db-rw" }
  mock_outputs_allowed_terraform_commands = ["init", "validate", "plan"]
  mock_outputs_merge_strategy_with_state  = "shallow"
}

dependency "oidc" {
  config_path = "${get_terragrunt_dir()}/../oidc"

  mock_outputs                            = { enabled = true, client_secret = "mock-client-secret" }
  mock_outputs_allowed_terraform_commands = ["init", "validate", "plan"]
  mock_outputs_merge_strategy_with_state  = "shallow"
}

inputs = {
  namespace = dependency.namespace.outputs.name
  name      = "dagctl"
  database_url_secret = {
    name = dependency.postgres.outputs.database_url_secret_name
    key  = dependency.postgres.outputs.database_url_secret_key
  }
  oidc_enabled               = dependency.oidc.outputs.enabled
  oidc_client_secret         = dependency.oidc.outputs.client_secret
  external_secret_store      = local.env.external_secret_store
  external_secret_remote_key = local.env.external_secret_remote_key
}
