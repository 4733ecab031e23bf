variable "enabled" {
  description = "Whether the webserver signs users in with OpenID Connect (false: local users only)."
  type        = bool
  default     = true
  nullable    = false
}

variable "issuer" {
  description = "The issuer URL (https, as in the provider's /.well-known/openid-configuration)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.issuer == "" || can(regex("^https://[^\\s/]+(/[^\\s]*)?$", var.issuer))
    error_message = "issuer must be an https URL."
  }
}

variable "client_id" {
  description = "The client id registered for dagctl at the identity provider (its redirect URI: <webserver base URL>/auth/oidc/callback)."
  type        = string
  default     = ""
  nullable    = false
}

variable "role_map" {
  description = "Identity-provider group => dagctl role (Admin, Op, User or Viewer). A user gets the strongest role of their groups; a user in none of them is refused."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for role in values(var.role_map) : contains(["admin", "op", "user", "viewer"], lower(role))])
    error_message = "role_map values must be Admin, Op, User or Viewer."
  }
  validation {
    condition     = alltrue([for group in keys(var.role_map) : can(regex("^[^=,]+$", group))])
    error_message = "role_map groups may not contain '=' or ','."
  }
}

variable "client_secret" {
  description = "The client secret (confidential client), or null when the Secret is filled by External Secrets or the client is public. Kept in this unit's state as a sensitive output: prefer External Secrets."
  type        = string
  default     = null
  sensitive   = true
}
