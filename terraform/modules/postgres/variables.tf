variable "namespace" {
  description = "Namespace of the database (dagctl's namespace: the URL's Secret must sit beside the release)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "mode" {
  description = "cnpg: a CloudNativePG Cluster in the namespace (the operator must be installed: module cnpg-operator). external: a database you run elsewhere, given by external_database_url."
  type        = string
  default     = "cnpg"
  nullable    = false

  validation {
    condition     = contains(["cnpg", "external"], var.mode)
    error_message = "mode must be cnpg or external."
  }
}

variable "cluster_name" {
  description = "Name of the CloudNativePG Cluster (its Services are <name>-rw/-ro/-r, its app Secret <name>-app)."
  type        = string
  default     = "dagctl-db"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be a DNS-1123 label of at most 40 characters starting with a letter."
  }
}

variable "instances" {
  description = "PostgreSQL instances of the Cluster (1 primary + replicas); 3 for production."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.instances >= 1 && var.instances <= 9 && floor(var.instances) == var.instances
    error_message = "instances must be a whole number from 1 to 9."
  }
}

variable "storage_size" {
  description = "Size of each instance's volume, as a Kubernetes quantity (e.g. 20Gi)."
  type        = string
  default     = "20Gi"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|Ti)$", var.storage_size))
    error_message = "storage_size must be a quantity such as 512Mi, 20Gi or 1Ti."
  }
}

variable "storage_class" {
  description = "StorageClass of the volumes; null: the cluster's default."
  type        = string
  default     = null
}

variable "postgres_image" {
  description = "PostgreSQL image for the Cluster, by digest (repository@sha256:<64 hex>); null: the image the pinned operator version defaults to."
  type        = string
  default     = null

  validation {
    condition     = var.postgres_image == null || can(regex("^[^@\\s]+@sha256:[a-f0-9]{64}$", coalesce(var.postgres_image, "x")))
    error_message = "postgres_image must be referenced by digest: repository@sha256:<64 hex>."
  }
}

variable "database" {
  description = "Database name (and its owner's role name) made at bootstrap."
  type        = string
  default     = "dagctl"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.database))
    error_message = "database must be a lower-case SQL identifier."
  }
}

variable "external_database_url" {
  description = "mode = external: the database URL (postgres://user:pass@host:5432/db?sslmode=require). Written write-only into a Secret: it is not kept in state. Pass it as TF_VAR_external_database_url, never in a committed file."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.external_database_url == null || can(regex("^postgres(ql)?://", coalesce(var.external_database_url, "x")))
    error_message = "external_database_url must start with postgres:// or postgresql://."
  }
}

variable "external_secret_revision" {
  description = "mode = external: raise by one to write a changed external_database_url (write-only values are compared by this number, not by content)."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.external_secret_revision >= 1 && floor(var.external_secret_revision) == var.external_secret_revision
    error_message = "external_secret_revision must be a whole number >= 1."
  }
}

variable "wait_timeout" {
  description = "How long to wait for the Cluster to become Ready on create (a Go duration, e.g. 15m)."
  type        = string
  default     = "15m"
  nullable    = false
}
