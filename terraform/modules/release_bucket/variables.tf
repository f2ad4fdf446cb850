variable "name" {
  description = "Name prefix of the bucket's KMS key alias (`<name>-releases`)."
  type        = string
}

variable "bucket_name" {
  description = "Globally unique name of the release bucket."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of a-z 0-9 . - ."
  }
}

variable "access_log_bucket" {
  description = "Bucket of the same region that receives the server access logs (its policy must allow this bucket)."
  type        = string
}

variable "release_retention_days" {
  description = "Days a release stays downloadable (the rolling restart only needs the current one)."
  type        = number
  default     = 90

  validation {
    condition     = var.release_retention_days >= 1
    error_message = "release_retention_days must be at least 1."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
