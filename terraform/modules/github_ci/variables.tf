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
  description = "GitHub environment of the deploy, rolling-restart and restore-drill jobs; it MUST have required reviewers: that approval is the only gate before a role is assumed."
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

variable "regions" {
  description = "Regions the deploy role may manage EC2 and load balancers in (the primary and DR regions)."
  type        = list(string)
}

variable "permissions_boundary_arn" {
  description = "The project's permissions boundary: the deploy role creates and changes roles only with it, and never changes it."
  type        = string
}

variable "bucket_names" {
  description = "The project's buckets (backups, replicas, their access-log buckets, releases): the deploy role's S3 reaches these only."
  type        = list(string)
}

variable "backup_bucket_arns" {
  description = "The backup buckets: the deploy role may configure them but never delete an object version or touch a lock."
  type        = list(string)
}

variable "release_bucket_arns" {
  description = "The release buckets, where the operate role uploads releases (releases/*) and presigns their download."
  type        = list(string)
}

variable "release_kms_key_arns" {
  description = "The release buckets' KMS keys (used by the operate role through S3 only)."
  type        = list(string)
}

variable "ssm_parameter_prefixes" {
  description = "Prefixes of the project's SSM parameters (passwords, TLS, replication password) that the deploy role manages."
  type        = list(string)
}

variable "drill_environment" {
  description = "GitHub environment of the scheduled restore drill (the drill role trusts it only). No required reviewers (a schedule cannot wait for one): restrict its deployment branches to the default branch; the role can only start the restore drill."
  type        = string
  default     = "restore-drill"
}

variable "drill_document_arns" {
  description = "The restore-drill SSM Command documents (every region): the only documents the drill role may send."
  type        = list(string)
}

variable "ssm_document_arns" {
  description = "The project's SSM Command documents (rolling restart, restore drill), in every region: the only documents the operate role may send."
  type        = list(string)
}

variable "terraform_state_bucket" {
  description = "Bucket of the Terraform state (backend.hcl), which the deploy role reads and writes; null: grant it elsewhere."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Hosted zone of the API's failover records; null: no Route53 record rights."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the roles and the OIDC provider."
  type        = map(string)
  default     = {}
}
