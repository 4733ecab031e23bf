output "release_name" {
  description = "The Helm release's name."
  value       = helm_release.dagctl.name
}

output "chart_version" {
  description = "The chart version deployed."
  value       = helm_release.dagctl.version
}

output "image" {
  description = "The image deployed, repository@digest."
  value       = "${var.image_repository}@${var.image_digest}"
}

output "scheduler_service" {
  description = "The execution API's Service (what task pods report to)."
  value       = "${local.fullname}-scheduler.${var.namespace}.svc"
}

output "webserver_service" {
  description = "The webserver's Service."
  value       = "${local.fullname}-webserver.${var.namespace}.svc"
}
