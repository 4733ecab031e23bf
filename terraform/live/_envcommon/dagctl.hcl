# dagctl itself: the Helm chart of this repository (deploy/helm/dagctl), image by digest only.
#
# Common to every env and region: included by each <env>/<region>/dagctl/terragrunt.hcl. Evaluated in the
# including unit's context: get_terragrunt_dir() is the unit's folder, find_in_parent_folders() searches above it,
# so env.hcl and region.hcl are those of the unit's environment and region.

locals {
  env    = read_terragrunt_config(find_in_parent_folders("env.hcl")).locals
  region = read_terragrunt_config(find_in_parent_folders("region.hcl")).locals
}

terraform {
  source = "${get_terragrunt_dir()}/../../../../modules//dagctl"
}

dependency "namespace" {
  config_path = "${get_terragrunt_dir()}/../namespace"

  mock_outputs                            = { name = "dagctl-mock" }
  mock_outputs_allowed_terraform_commands = ["init", "validate", "plan"]
  mock_outputs_merge_strategy_with_state  = "shallow"
}

dependency "secrets" {
  config_path = "${get_terragrunt_dir()}/../secrets"

  mock_outputs                            = { name = "dagctl", managed_by = "opentofu", keys = ["database-url"] }
  mock_outputs_allowed_terraform_commands = ["init", "validate", "plan"]
  mock_outputs_merge_strategy_with_state  = "shallow"
}

dependency "oidc" {
  config_path = "${get_terragrunt_dir()}/../oidc"

  mock_outputs                            = { helm_values = { enabled = false, issuer = "", clientId = "", roleMap = "" } }
  mock_outputs_allowed_terraform_commands = ["init", "validate", "plan"]
  mock_outputs_merge_strategy_with_state  = "shallow"
}

inputs = {
  namespace = dependency.namespace.outputs.name
  # Terragrunt copies only terraform/modules into its cache: the chart is given by its path in this checkout.
  chart_path         = "${get_terragrunt_dir()}/../../../../../deploy/helm/dagctl"
  chart_version      = local.env.dagctl_chart_version
  image_repository   = local.env.image_repository
  image_digest       = local.env.image_digest
  secret_name        = dependency.secrets.outputs.name
  oidc               = dependency.oidc.outputs.helm_values
  scheduler_replicas = local.env.scheduler_replicas
  webserver_replicas = local.env.webserver_replicas
  base_url           = "https://${local.region.hostname}"
  ingress = {
    host       = local.region.hostname
    class_name = local.region.ingress_class
    tls_secret = local.region.tls_secret
  }
}
