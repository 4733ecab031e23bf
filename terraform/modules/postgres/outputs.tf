output "database_url_secret_name" {
  description = "Name of the Secret (in var.namespace) whose key database_url_secret_key holds the database URL."
  value       = local.cnpg ? "${kubernetes_manifest.cluster[0].manifest.metadata.name}-app" : kubernetes_secret_v1.external[0].metadata[0].name
}

output "database_url_secret_key" {
  description = "Key of the database URL in that Secret (CloudNativePG's app Secret names it uri)."
  value       = "uri"
}

output "host" {
  description = "Read-write host of the database inside the cluster (mode = cnpg); empty for an external database."
  value       = local.cnpg ? "${var.cluster_name}-rw.${var.namespace}.svc" : ""
}
