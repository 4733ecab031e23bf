output "name" {
  description = "The namespace's name (read back from the created object, so dependants wait for it)."
  value       = kubernetes_namespace_v1.this.metadata[0].name
}
