variable "name" {
  description = "Project name: prefixes the roles, and the deploy role may manage only IAM roles and instance profiles named `<name>-*`."
  type        = string
}

variable "github_repository" {
  description = "GitHub repository allowed to assume the roles, as `owner/name`."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "github_environment" {
  description = "GitHub environment of the deploy job; give it required reviewers, that is the manual approval before apply."
  type        = string
  default     = "production"
}

variable "create_oidc_provider" {
  description = "Create the account's GitHub OIDC provider (false when the account already has one: there can be only one per URL)."
  type        = bool
  default     = true
}

variable "project_tag" {
  description = "Value of the `Project` tag on the instances the operate role may run commands on."
  type        = string
}

variable "tags" {
  description = "Tags for the roles and the OIDC provider."
  type        = map(string)
  default     = {}
}
