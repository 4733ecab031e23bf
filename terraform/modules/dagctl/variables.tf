variable "namespace" {
  description = "Namespace of the release (made by the namespace module; the release does not create it)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "release_name" {
  description = "Helm release name (objects are named <release>-dagctl-..., or <release>-... when it contains dagctl)."
  type        = string
  default     = "dagctl"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a DNS-1123 label of at most 53 characters."
  }
}

variable "chart_path" {
  description = "Path of the chart folder; null: deploy/helm/dagctl of this repository, relative to this module. Terragrunt copies only terraform/modules into its cache, so the live units pass the absolute path."
  type        = string
  default     = null
}

variable "chart_version" {
  description = "The chart's exact version (Chart.yaml `version`): a mismatch with the chart folder stops the plan."
  type        = string
  default     = "0.1.0"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.chart_version))
    error_message = "chart_version must be an exact version such as 0.1.0."
  }
}

variable "image_repository" {
  description = "The dagctl image's repository, without tag or digest (e.g. ghcr.io/dagctl/dagctl)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9._/:]*[a-z0-9])?$", var.image_repository)) && !can(regex("[@]", var.image_repository))
    error_message = "image_repository must be a repository name without a digest."
  }
}

variable "image_digest" {
  description = "The dagctl image's digest, sha256:<64 hex>, as the image build printed it. Deployed by digest only: a tag is refused."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^sha256:[a-f0-9]{64}$", var.image_digest))
    error_message = "image_digest must be sha256:<64 lower-case hex> (dagctl is deployed by digest, never by a mutable tag such as latest)."
  }
}

variable "secret_name" {
  description = "The Secret with database-url, secret-key, fernet-key (and oidc-client-secret) - the secrets module's output `name`."
  type        = string
  nullable    = false
}

variable "oidc" {
  description = "The chart's `oidc` values - the oidc module's output `helm_values`."
  type = object({
    enabled  = bool
    issuer   = string
    clientId = string
    roleMap  = string
  })
  default = { enabled = false, issuer = "", clientId = "", roleMap = "" }
}

variable "scheduler_replicas" {
  description = "Scheduler replicas (they share the work through PostgreSQL)."
  type        = number
  default     = 2
  nullable    = false

  validation {
    condition     = var.scheduler_replicas >= 1 && floor(var.scheduler_replicas) == var.scheduler_replicas
    error_message = "scheduler_replicas must be a whole number >= 1."
  }
}

variable "webserver_replicas" {
  description = "Webserver replicas."
  type        = number
  default     = 2
  nullable    = false

  validation {
    condition     = var.webserver_replicas >= 1 && floor(var.webserver_replicas) == var.webserver_replicas
    error_message = "webserver_replicas must be a whole number >= 1."
  }
}

variable "base_url" {
  description = "The webserver's public URL (https makes cookies Secure; OIDC redirects come back here); empty: none."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.base_url == "" || can(regex("^https?://[^\\s]+$", var.base_url))
    error_message = "base_url must be an http(s) URL or empty."
  }
}

variable "ingress" {
  description = "The webserver's Ingress; null: none."
  type = object({
    host        = string
    class_name  = optional(string, "")
    tls_secret  = optional(string, "")
    annotations = optional(map(string), {})
  })
  default = null
}

variable "task_egress_to" {
  description = "NetworkPolicy `to` peers task pods may reach besides the execution API and DNS; empty: anywhere."
  type        = any
  default     = []
  nullable    = false
}

variable "dag_files" {
  description = "DAG files for the chart's ConfigMap (file name => DAG YAML), used when dags_git is null."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "dags_git" {
  description = "DAGs from a git repository that each scheduler keeps in sync (the chart's dags.git); null: the dag_files ConfigMap. credentials_secret names a Secret made outside: key token (auth = token), or ssh-key and known-hosts (auth = ssh)."
  type = object({
    url                = string
    branch             = optional(string, "main")
    subdir             = optional(string, "")
    interval           = optional(string, "60s")
    auth               = optional(string, "none")
    username           = optional(string, "git")
    credentials_secret = optional(string, "")
  })
  default = null

  validation {
    condition     = var.dags_git == null || contains(["none", "token", "ssh"], try(var.dags_git.auth, ""))
    error_message = "dags_git.auth must be none, token or ssh."
  }
  validation {
    condition     = var.dags_git == null || try(var.dags_git.auth, "none") == "none" || try(var.dags_git.credentials_secret, "") != ""
    error_message = "dags_git.credentials_secret must name a Secret when auth is token or ssh."
  }
}

variable "extra_values" {
  description = "Further chart values as an object, merged last (shallowly, per top-level key: give whole sections)."
  type        = any
  default     = {}
  nullable    = false
}

variable "timeout" {
  description = "Seconds Helm waits for the release's Deployments to become ready."
  type        = number
  default     = 600
  nullable    = false
}
