output "helm_values" {
  description = "The chart's `oidc` values (no secret: the client secret goes into the release's Secret)."
  value = {
    enabled  = var.enabled
    issuer   = var.enabled ? var.issuer : ""
    clientId = var.enabled ? var.client_id : ""
    roleMap  = var.enabled ? local.role_map : ""
  }

  precondition {
    condition     = local.complete
    error_message = "OIDC is enabled: issuer, client_id and a non-empty role_map are all needed (dagctl refuses to start without a role map)."
  }
}

output "enabled" {
  description = "Whether OIDC is on (the Secret then needs the key oidc-client-secret)."
  value       = var.enabled
}

output "client_secret" {
  # Never null: Terragrunt may leave an output whose value is null out of a dependency's outputs.
  description = "The client secret, for the secrets module (empty when External Secrets provides it or OIDC is off)."
  value       = var.enabled && var.client_secret != null ? var.client_secret : ""
  sensitive   = true
}
