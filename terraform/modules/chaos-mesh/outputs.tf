output "enabled" {
  description = "Whether Chaos Mesh is installed."
  value       = var.enabled
}

output "namespace" {
  description = "Namespace of Chaos Mesh; null when not installed."
  value       = var.enabled ? helm_release.chaos_mesh[0].namespace : null
}

output "chart_version" {
  description = "The chart version installed; null when not installed."
  value       = var.enabled ? helm_release.chaos_mesh[0].version : null
}
