# The namespace dagctl runs in, its quota and limits, and who may do what in it.
#
# Common to every env and region: included by each <env>/<region>/namespace/terragrunt.hcl and evaluated in that
# unit's context (get_terragrunt_dir(), find_in_parent_folders(): the unit's folder and its env.hcl/region.hcl).

locals {
  env    = read_terragrunt_config(find_in_parent_folders("env.hcl")).locals
  region = read_terragrunt_config(find_in_parent_folders("region.hcl")).locals
}

terraform {
  source = "${get_terragrunt_dir()}/../../../../modules//namespace"
}

inputs = {
  name               = local.env.namespace
  labels             = { environment = local.env.env, region = local.region.region }
  pod_security_level = "baseline"
  admin_groups       = local.env.admin_groups
  view_groups        = local.env.view_groups
  resource_quota     = local.env.resource_quota
  limit_range = {
    default_request = { cpu = "100m", memory = "128Mi" }
    default_limit   = { memory = "512Mi" }
  }
}
