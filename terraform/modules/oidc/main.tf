# OIDC settings, validated once here (the precondition on the output `helm_values` stops a plan that lacks one),
# and shaped as the chart's `oidc` values.

locals {
  # The chart and `dagctl webserver` read the role map as `group=Role,group=Role`.
  role_map = join(",", [for group in sort(keys(var.role_map)) : "${group}=${var.role_map[group]}"])
  complete = !var.enabled || (var.issuer != "" && var.client_id != "" && length(var.role_map) > 0)
}
