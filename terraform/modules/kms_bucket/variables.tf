variable "bucket_name" {
  description = "Globally unique name of the bucket; `<bucket_name>-logs` is created beside it for access logs."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,56}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-58 characters of a-z 0-9 . - (room is kept for the -logs suffix)."
  }
}

variable "key_alias" {
  description = "Alias of the bucket's KMS key (without `alias/`)."
  type        = string
}

variable "key_description" {
  description = "Description of the bucket's KMS key."
  type        = string
}

variable "noncurrent_version_expiration_days" {
  description = "Days an expired or overwritten object version is kept after it stopped being current (it is never deleted before its lock ends)."
  type        = number

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which the parts of an unfinished multipart upload are deleted (in the log bucket too)."
  type        = number

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1
    error_message = "abort_incomplete_multipart_upload_days must be at least 1."
  }
}

variable "access_log_retention_days" {
  description = "Days S3 server access logs are kept."
  type        = number
}

variable "other_log_sources" {
  description = "Other buckets of this region whose access logs the log bucket accepts (under s3/<bucket>/)."
  type        = list(string)
  default     = []
}

variable "object_lock_mode" {
  description = "Object Lock mode of the default retention: GOVERNANCE (only a principal with s3:BypassGovernanceRetention can delete early) or COMPLIANCE (nobody can, not even the account root)."
  type        = string

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.object_lock_mode)
    error_message = "object_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "object_lock_retention_days" {
  description = "Days every new object version is locked (default retention); current versions under current_version_expiration_prefixes expire after as many days."
  type        = number

  validation {
    condition     = var.object_lock_retention_days >= 1 && var.object_lock_retention_days <= 3650
    error_message = "object_lock_retention_days must be between 1 and 3650."
  }
}

variable "current_version_expiration_prefixes" {
  description = "Key prefixes whose current versions expire after object_lock_retention_days (the backups); keys elsewhere stay current until overwritten."
  type        = list(string)
  default     = []
}

variable "log_delivery_prefixes" {
  description = "Prefixes of the access-log bucket where load balancers of this account and region deliver their access logs (delivery.logs.amazonaws.com)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
