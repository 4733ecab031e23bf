output "name" {
  description = "Name of the Secret the chart reads (secrets.name)."
  value       = local.use_eso ? kubernetes_manifest.external_secret[0].manifest.metadata.name : kubernetes_secret_v1.this[0].metadata[0].name
}

output "managed_by" {
  description = "external-secrets (an ExternalSecret fills the Secret) or opentofu (written write-only by this module)."
  value       = local.use_eso ? "external-secrets" : "opentofu"
}

output "keys" {
  description = "The keys the Secret holds (names only)."
  value       = concat(["database-url", "secret-key", "fernet-key"], var.oidc_enabled ? ["oidc-client-secret"] : [])
}
