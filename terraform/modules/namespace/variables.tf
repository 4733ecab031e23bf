variable "name" {
  description = "The namespace dagctl runs in (its schedulers, webservers, task pods and its Secret)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.name))
    error_message = "name must be a DNS-1123 label: lower case letters, digits and '-', at most 63 characters."
  }
}

variable "labels" {
  description = "Extra labels on the namespace (e.g. environment = \"staging\")."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "pod_security_level" {
  description = "Pod Security Admission level enforced on the namespace: restricted, baseline or privileged. dagctl's own pods pass restricted; task pods that test networks may need baseline."
  type        = string
  default     = "baseline"
  nullable    = false

  validation {
    condition     = contains(["restricted", "baseline", "privileged"], var.pod_security_level)
    error_message = "pod_security_level must be restricted, baseline or privileged."
  }
}

variable "admin_groups" {
  description = "Identity-provider groups bound to the built-in ClusterRole `admin` in this namespace only (a RoleBinding each)."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "view_groups" {
  description = "Identity-provider groups bound to the built-in ClusterRole `view` in this namespace only."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "resource_quota" {
  description = "Hard limits of a ResourceQuota on the namespace (keys as in Kubernetes, e.g. \"requests.cpu\" = \"8\", pods = \"200\"); null: no quota. Task pods count against it, so size it for the DAGs' parallelism."
  type        = map(string)
  default     = null

  validation {
    condition     = var.resource_quota == null || length(coalesce(var.resource_quota, {})) > 0
    error_message = "resource_quota must be null (no quota) or name at least one limit."
  }
}

variable "limit_range" {
  description = "Container defaults of a LimitRange (applied to containers that set no requests/limits); null: no LimitRange."
  type = object({
    default_request = map(string)
    default_limit   = map(string)
  })
  default = null
}
