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
  description = "Days a deleted or overwritten object stays recoverable as a noncurrent version."
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

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
