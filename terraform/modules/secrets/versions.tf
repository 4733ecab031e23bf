terraform {
  # 1.11: write-only attributes (the Secret's values are written with data_wo and kept out of state).
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "3.2.1"
    }
    # Only for generating secret-key and fernet-key when they are not given (and no External Secrets store).
    random = {
      source  = "hashicorp/random"
      version = "3.9.0"
    }
  }
}
