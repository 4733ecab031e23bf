variable "enabled" {
  description = "Install Chaos Mesh (for chaos experiments on Kubernetes-hosted test networks). false: nothing is made."
  type        = bool
  default     = false
  nullable    = false
}

variable "namespace" {
  description = "Namespace of Chaos Mesh (created by the release if missing)."
  type        = string
  default     = "chaos-mesh"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "chart_version" {
  description = "Exact version of the chaos-mesh chart. Pinned: a range is refused."
  type        = string
  default     = "2.8.3"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.chart_version))
    error_message = "chart_version must be an exact version such as 2.8.3, not a range."
  }
}

variable "chart_repository" {
  description = "Helm repository serving the chaos-mesh chart."
  type        = string
  default     = "https://charts.chaos-mesh.org"
  nullable    = false
}

variable "container_runtime" {
  description = "The nodes' container runtime, for chaos-daemon: containerd, crio or docker."
  type        = string
  default     = "containerd"
  nullable    = false

  validation {
    condition     = contains(["containerd", "crio", "docker"], var.container_runtime)
    error_message = "container_runtime must be containerd, crio or docker."
  }
}

variable "target_namespaces" {
  description = "Namespaces Chaos Mesh may inject faults into (annotated chaos-mesh.org/inject=enabled by you); empty: all namespaces."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "values" {
  description = "Extra values for the chart, as an object (merged over this module's own, per top-level key)."
  type        = any
  default     = {}
  nullable    = false
}
