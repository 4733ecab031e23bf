variable "namespace" {
  description = "Namespace of the CloudNativePG operator (created by the release if missing)."
  type        = string
  default     = "cnpg-system"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "chart_version" {
  description = "Exact version of the cloudnative-pg chart (0.29.0 installs operator 1.30.0). Pinned: a range is refused."
  type        = string
  default     = "0.29.0"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.chart_version))
    error_message = "chart_version must be an exact version such as 0.29.0, not a range."
  }
}

variable "chart_repository" {
  description = "Helm repository serving the cloudnative-pg chart (a mirror of it, where the cluster cannot reach the public one)."
  type        = string
  default     = "https://cloudnative-pg.github.io/charts"
  nullable    = false
}

variable "values" {
  description = "Extra values for the chart, as an object (merged over this module's own)."
  type        = any
  default     = {}
  nullable    = false
}
