terraform {
  # No provider: this module checks the OIDC client's settings and shapes them for the chart and the Secret,
  # whatever the identity provider (Keycloak, Dex, Entra ID, Okta, Google ...). The client itself is
  # registered in the identity provider, outside this module.
  required_version = ">= 1.11.0, < 2.0.0"
}
