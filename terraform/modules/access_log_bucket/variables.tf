variable "bucket_name" {
  description = "Name of the access-log bucket."
  type        = string
}

variable "log_source_buckets" {
  description = "Names of the buckets (in this account and region) whose server access logs this bucket receives, each under s3/<name>/."
  type        = list(string)
}

variable "log_delivery_prefixes" {
  description = "Prefixes (no slashes at either end) under which this account's load balancers of this region deliver access logs; empty: none."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.log_delivery_prefixes : can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", p)) && !strcontains(p, "AWSLogs")])
    error_message = "log_delivery_prefixes must be key prefixes without leading or trailing slashes, and must not contain AWSLogs."
  }
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
