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

variable "backup_prefix" {
  description = "Key prefix of the backups (DOB_S3_PREFIX): the backups under it expire after retention_days; the fence record (<prefix>/fence/) never does."
  type        = string
}

variable "retention_days" {
  description = "Days every backup object version is locked (Object Lock default retention) and after which the backups' current versions expire, in both buckets."
  type        = number
  default     = 35
}

variable "object_lock_mode" {
  description = "Object Lock mode of both buckets: GOVERNANCE or COMPLIANCE (see terraform/README.md)."
  type        = string
  default     = "GOVERNANCE"
}

variable "noncurrent_version_expiration_days" {
  description = "Days an expired or overwritten object version is kept after it stopped being current (never deleted before its lock ends)."
  type        = number
  default     = 7
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

variable "source_region_log_delivery_prefixes" {
  description = "Prefixes of the source-region log bucket where load balancers of that region deliver access logs."
  type        = list(string)
  default     = []
}

variable "replica_region_log_delivery_prefixes" {
  description = "Prefixes of the replica-region log bucket where load balancers of that region deliver access logs."
  type        = list(string)
  default     = []
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary of the replication role (the project's); null for none."
  type        = string
  default     = null
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
