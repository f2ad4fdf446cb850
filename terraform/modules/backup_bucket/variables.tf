variable "name" {
  description = "Name prefix of the keys and the replication role (e.g. `dob`)."
  type        = string
}

variable "bucket_name" {
  description = "Name of the backup bucket in the source (primary) region. Globally unique; `<name>-logs` is created beside it for access logs."
  type        = string
}

variable "replica_bucket_name" {
  description = "Name of the replica bucket in the DR region. Globally unique; `<name>-logs` is created beside it."
  type        = string
}

variable "noncurrent_version_expiration_days" {
  description = "Days a deleted or overwritten backup object stays recoverable as a noncurrent version."
  type        = number
  default     = 30
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which the parts of an unfinished multipart upload (an interrupted dump) are deleted."
  type        = number
  default     = 2
}

variable "access_log_retention_days" {
  description = "Days S3 server access logs are kept."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "source_region_log_sources" {
  description = "Other buckets of the source region whose access logs the source-region log bucket accepts (under s3/<bucket>/), e.g. the release bucket."
  type        = list(string)
  default     = []
}

variable "replica_region_log_sources" {
  description = "Other buckets of the replica region whose access logs the replica-region log bucket accepts (under s3/<bucket>/)."
  type        = list(string)
  default     = []
}
