output "namespace" {
  description = "Namespace the operator runs in."
  value       = helm_release.cnpg.namespace
}

output "chart_version" {
  description = "The chart version installed (dependants wait for the release through this output)."
  value       = helm_release.cnpg.version
}
