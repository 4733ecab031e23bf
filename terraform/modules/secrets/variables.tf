variable "namespace" {
  description = "Namespace of the release (the Secret must sit beside it)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "name" {
  description = "Name of the Secret the chart reads (the chart's secrets.name)."
  type        = string
  default     = "dagctl"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.name))
    error_message = "name must be a DNS-1123 label."
  }
}

variable "external_secret_store" {
  description = "External Secrets store that holds dagctl's remote secret ({kind = \"ClusterSecretStore\" or \"SecretStore\", name}). Set: an ExternalSecret fills the Secret and no secret value passes through OpenTofu. null: the Secret is written by OpenTofu from the variables below."
  type = object({
    kind = string
    name = string
  })
  default = null

  validation {
    condition     = var.external_secret_store == null || contains(["ClusterSecretStore", "SecretStore"], try(var.external_secret_store.kind, ""))
    error_message = "external_secret_store.kind must be ClusterSecretStore or SecretStore."
  }
}

variable "external_secret_remote_key" {
  description = "With a store: the one remote secret whose properties are secret-key, fernet-key, oidc-client-secret (with OIDC) and database-url (unless database_url_secret is given)."
  type        = string
  default     = ""
  nullable    = false
}

variable "external_secret_refresh_interval" {
  description = "How often External Secrets re-reads the remote secret (a Go duration)."
  type        = string
  default     = "1h"
  nullable    = false

  validation {
    condition     = can(regex("^([0-9]+(s|m|h))+$", var.external_secret_refresh_interval))
    error_message = "external_secret_refresh_interval must be a duration such as 30m or 1h."
  }
}

variable "database_url_secret" {
  description = "The in-cluster Secret holding the database URL (the postgres module's outputs): copied into the key database-url. null: the URL comes from the remote secret (with a store) or from database_url."
  type = object({
    name = string
    key  = string
  })
  default = null
}

variable "database_url" {
  description = "The database URL, when database_url_secret is null and there is no store. Sensitive: pass it as TF_VAR_database_url."
  type        = string
  default     = null
  sensitive   = true
}

variable "secret_key" {
  description = "secret-key (signs API tokens and sessions; the same for every scheduler and webserver). null: generated once (then kept in state)."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.secret_key == null || length(coalesce(var.secret_key, "x")) >= 32
    error_message = "secret_key must be at least 32 characters."
  }
}

variable "fernet_key" {
  description = "fernet-key (encrypts variables and connections at rest): 32 bytes in URL-safe base64. null: generated once (then kept in state). Losing it makes stored connections unreadable."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.fernet_key == null || can(regex("^[A-Za-z0-9_-]{43}=$", coalesce(var.fernet_key, "x")))
    error_message = "fernet_key must be 32 bytes in URL-safe base64 (44 characters ending in '=')."
  }
}

variable "oidc_enabled" {
  description = "Whether the release signs users in with OIDC (the Secret then needs oidc-client-secret)."
  type        = bool
  default     = false
  nullable    = false
}

variable "oidc_client_secret" {
  description = "The OIDC client secret (the oidc module's output), when there is no store; null or empty: none given."
  type        = string
  default     = null
  sensitive   = true
}

variable "revision" {
  description = "Without a store: raise by one to rewrite the Secret with changed values (write-only values are compared by this number, not by content)."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.revision >= 1 && floor(var.revision) == var.revision
    error_message = "revision must be a whole number >= 1."
  }
}
