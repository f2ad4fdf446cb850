variable "bucket_name" {
  description = "Name of the access-log bucket."
  type        = string
}

variable "log_source_buckets" {
  description = "Names of the buckets (in this account and region) whose server access logs this bucket receives, each under s3/<name>/."
  type        = list(string)
}

variable "retention_days" {
  description = "Days after which access-log objects expire."
  type        = number
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which incomplete multipart uploads are aborted."
  type        = number
}

variable "tags" {
  description = "Tags for the bucket."
  type        = map(string)
  default     = {}
}
