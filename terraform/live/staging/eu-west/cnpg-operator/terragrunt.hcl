# The CloudNativePG operator (cluster-wide): applied before postgres, whose Cluster needs the operator's CRDs
# when it is planned.

include "root" {
  path = find_in_parent_folders("root.hcl")
}

locals {
  env    = read_terragrunt_config(find_in_parent_folders("env.hcl")).locals
  region = read_terragrunt_config(find_in_parent_folders("region.hcl")).locals
}

terraform {
  source = "${get_terragrunt_dir()}/../../../../modules//cnpg-operator"
}

inputs = {
  chart_version = local.env.cnpg_chart_version
}
