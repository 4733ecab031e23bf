# The CloudNativePG operator (cluster-wide): applied before postgres, whose Cluster needs the operator's CRDs
# when it is planned.
#
# Common to every env and region: included by each <env>/<region>/cnpg-operator/terragrunt.hcl and evaluated in
# that unit's context (find_in_parent_folders(): the unit's env.hcl).

locals {
  env = read_terragrunt_config(find_in_parent_folders("env.hcl")).locals
}

terraform {
  source = "${get_terragrunt_dir()}/../../../../modules//cnpg-operator"
}

inputs = {
  chart_version = local.env.cnpg_chart_version
}
