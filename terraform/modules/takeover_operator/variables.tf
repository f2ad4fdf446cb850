variable "name" {
  description = "Name of the role."
  type        = string
}

variable "operator_principal_arns" {
  description = "Who may assume the role (IAM users or roles of the people who decide a takeover). Empty: no role."
  type        = list(string)
  default     = []
}

variable "require_mfa" {
  description = "Whether assuming the role needs MFA (aws:MultiFactorAuthPresent)."
  type        = bool
  default     = true
}

variable "fence_object_arns" {
  description = "ARNs of both fence records in every fence bucket (<bucket>/<prefix>/fence/epoch.json and detach.json)."
  type        = list(string)
}

variable "fence_kms_key_arns" {
  description = "ARNs of the fence buckets' KMS keys (used only through S3)."
  type        = list(string)
}

variable "isolation_peers" {
  description = "Each region's database tier the role may isolate (dob-promote --takeover in the other region) and lift: its region, its VPC's ARN and its `dob:fence-group`."
  type = list(object({
    region  = string
    vpc_arn = string
    group   = string
  }))
  default = []
}

variable "permissions_boundary_arn" {
  description = "The project's permissions boundary (modules/permissions_boundary)."
  type        = string
}

variable "tags" {
  description = "Tags for the role."
  type        = map(string)
  default     = {}
}
