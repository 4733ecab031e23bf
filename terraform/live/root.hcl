# Terragrunt root configuration, included by every unit (terraform/live/<env>/<region>/<unit>/terragrunt.hcl)
# through `find_in_parent_folders("root.hcl")`, beside the unit kind's common file _envcommon/<unit>.hcl (its module
# source, dependencies and inputs, the same in every env and region). It sets, for each unit:
# - the state backend: OpenTofu's `kubernetes` backend, one Secret per unit in the namespace
#   `state_namespace` (region.hcl) of the region's own cluster: no cloud account or bucket is needed, and the
#   state sits beside what it describes. The backend locks with a Lease. The state Secrets hold sensitive values
#   (see terraform/modules/secrets/main.tf): only cluster admins may read that namespace. Create it once per
#   cluster before the first apply: `kubectl --context <ctx> create namespace tofu-state`.
# - the provider blocks (generated): kubernetes and helm, pointed at the region's kube context. A unit gets only
#   the providers its module declares (`providers_by_unit`), so no unpinned provider is ever pulled in.
#
# One-click deploy of an environment: `cd terraform/live/staging && terragrunt run --all apply`.

locals {
  env    = read_terragrunt_config(find_in_parent_folders("env.hcl")).locals
  region = read_terragrunt_config(find_in_parent_folders("region.hcl")).locals
  unit   = basename(get_terragrunt_dir())

  # KUBECONFIG may list several files, as kubectl allows.
  kubeconfig_paths = split(":", get_env("KUBECONFIG", "${get_env("HOME")}/.kube/config"))

  # Which providers each unit's module requires (its versions.tf pins them; check_inputs.py compares).
  providers_by_unit = {
    "namespace"     = ["kubernetes"]
    "cnpg-operator" = ["helm"]
    "postgres"      = ["kubernetes"]
    "oidc"          = []
    "secrets"       = ["kubernetes"]
    "dagctl"        = ["helm"]
    "chaos-mesh"    = ["helm"]
  }
  providers = local.providers_by_unit[local.unit]

  provider_blocks = {
    kubernetes = <<-EOT
      provider "kubernetes" {
        config_paths   = ${jsonencode(local.kubeconfig_paths)}
        config_context = "${local.region.kube_context}"
      }
    EOT
    helm       = <<-EOT
      provider "helm" {
        kubernetes = {
          config_paths   = ${jsonencode(local.kubeconfig_paths)}
          config_context = "${local.region.kube_context}"
        }
      }
    EOT
  }
}

# OpenTofu, not Terraform (scripts/ensure-tofu.sh builds it); put it on PATH or set TG_TF_PATH.
terraform_binary = "tofu"

remote_state {
  backend = "kubernetes"
  generate = {
    path      = "backend.tf"
    if_exists = "overwrite_terragrunt"
  }
  config = {
    # The Secret is tfstate-default-<suffix>; the suffix is also a label value, so at most 63 characters.
    secret_suffix  = "dagctl-${local.env.env}-${local.region.region}-${local.unit}"
    namespace      = local.region.state_namespace
    config_paths   = local.kubeconfig_paths
    config_context = local.region.kube_context
  }
}

generate "providers" {
  path      = "providers.tf"
  if_exists = "overwrite_terragrunt"
  contents  = join("\n", [for name in local.providers : local.provider_blocks[name]])
}

# Every unit's inputs are its kind's (_envcommon/<unit>.hcl) and its own; nothing is passed to all of them.
inputs = {}
