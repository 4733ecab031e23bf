# Chaos Mesh, optional: env.hcl's chaos_mesh_enabled (false: the unit applies nothing).
#
# Common to every env and region: included by each <env>/<region>/chaos-mesh/terragrunt.hcl and evaluated in
# that unit's context (find_in_parent_folders(): the unit's env.hcl and region.hcl).

locals {
  env    = read_terragrunt_config(find_in_parent_folders("env.hcl")).locals
  region = read_terragrunt_config(find_in_parent_folders("region.hcl")).locals
}

terraform {
  source = "${get_terragrunt_dir()}/../../../../modules//chaos-mesh"
}

inputs = {
  enabled           = local.env.chaos_mesh_enabled
  chart_version     = local.env.chaos_mesh_chart_version
  container_runtime = local.region.container_runtime
}
