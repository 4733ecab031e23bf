# PostgreSQL: a CloudNativePG Cluster in dagctl's namespace. Its app Secret (<cluster>-app, key uri) holds the
# database URL; the password never passes through OpenTofu.
#
# Common to every env and region: included by each <env>/<region>/postgres/terragrunt.hcl and evaluated in that
# unit's context (get_terragrunt_dir(), find_in_parent_folders(): the unit's folder and its env.hcl/region.hcl).

locals {
  env    = read_terragrunt_config(find_in_parent_folders("env.hcl")).locals
  region = read_terragrunt_config(find_in_parent_folders("region.hcl")).locals
}

terraform {
  source = "${get_terragrunt_dir()}/../../../../modules//postgres"
}

dependency "namespace" {
  config_path = "${get_terragrunt_dir()}/../namespace"

  mock_outputs                            = { name = "dagctl-mock" }
  mock_outputs_allowed_terraform_commands = ["init", "validate", "plan"]
  mock_outputs_merge_strategy_with_state  = "shallow"
}

dependency "cnpg_operator" {
  config_path = "${get_terragrunt_dir()}/../cnpg-operator"

  mock_outputs                            = { namespace = "cnpg-system", chart_version = "0.0.0" }
  mock_outputs_allowed_terraform_commands = ["init", "validate", "plan"]
  mock_outputs_merge_strategy_with_state  = "shallow"
}

inputs = {
  namespace     = dependency.namespace.outputs.name
  mode          = "cnpg"
  instances     = local.env.postgres_instances
  storage_size  = local.env.postgres_storage_size
  storage_class = local.region.storage_class
}
