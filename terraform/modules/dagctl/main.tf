# dagctl's Helm chart from this repository, image by digest only. The chart's own ExternalSecret is left off:
# the secrets module owns the Secret (an ExternalSecret of its own, or a Secret).

locals {
  chart_path    = coalesce(var.chart_path, "${path.module}/../../../deploy/helm/dagctl")
  chart_version = yamldecode(file("${local.chart_path}/Chart.yaml")).version

  values = merge(
    {
      image = {
        repository = var.image_repository
        digest     = var.image_digest
      }
      scheduler = { replicas = var.scheduler_replicas }
      webserver = {
        replicas = var.webserver_replicas
        baseUrl  = var.base_url
        ingress = {
          enabled     = var.ingress != null
          host        = try(var.ingress.host, "")
          className   = try(var.ingress.class_name, "")
          tlsSecret   = try(var.ingress.tls_secret, "")
          annotations = try(var.ingress.annotations, {})
        }
      }
      secrets = {
        name           = var.secret_name
        externalSecret = { enabled = false }
      }
      oidc  = var.oidc
      tasks = { egressTo = var.task_egress_to }
      dags = {
        files = var.dag_files
        git = {
          enabled           = var.dags_git != null
          url               = try(var.dags_git.url, "")
          branch            = try(var.dags_git.branch, "main")
          subdir            = try(var.dags_git.subdir, "")
          interval          = try(var.dags_git.interval, "60s")
          auth              = try(var.dags_git.auth, "none")
          username          = try(var.dags_git.username, "git")
          credentialsSecret = try(var.dags_git.credentials_secret, "")
        }
      }
      # A PodDisruptionBudget with minAvailable 1 over one pod would block node drains.
      podDisruptionBudget = { enabled = var.scheduler_replicas > 1 && var.webserver_replicas > 1 }
    },
    var.extra_values,
  )
}

resource "helm_release" "dagctl" {
  name      = var.release_name
  namespace = var.namespace
  chart     = local.chart_path
  version   = var.chart_version
  atomic    = true
  wait      = true
  timeout   = var.timeout

  values = [yamlencode(local.values)]

  lifecycle {
    precondition {
      condition     = local.chart_version == var.chart_version
      error_message = "The chart at ${local.chart_path} is version ${local.chart_version}, but chart_version pins ${var.chart_version}."
    }
  }
}

locals {
  # The chart's dagctl.fullname: the release name when it contains "dagctl", else <release>-dagctl; 40 chars.
  fullname = trimsuffix(substr(strcontains(var.release_name, "dagctl") ? var.release_name : "${var.release_name}-dagctl", 0, 40), "-")
}
