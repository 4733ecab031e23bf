terraform {
  # 1.11: write-only attributes (the external URL is written with data_wo and kept out of state).
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "3.2.1"
    }
  }
}
