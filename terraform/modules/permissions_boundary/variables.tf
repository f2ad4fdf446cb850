variable "name" {
  description = "Project name: the policy is `<name>-workload-boundary`."
  type        = string
}

variable "backup_bucket_arns" {
  description = "ARNs of the backup buckets (source and replica) whose objects and protections no bounded role may touch."
  type        = list(string)

  validation {
    condition     = length(var.backup_bucket_arns) > 0 && alltrue([for b in var.backup_bucket_arns : can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9.-]+$", b))])
    error_message = "backup_bucket_arns must list S3 bucket ARNs (arn:aws:s3:::NAME)."
  }
}

variable "pgbackrest_prefixes" {
  description = "Key prefixes of pgBackRest's repositories in the backup buckets (the primary region's, and the DR region's own, written after a takeover): the only keys a bounded role may put a delete marker on (pgBackRest's expire)."
  type        = list(string)
  default     = ["pgbackrest/", "pgbackrest-dr/"]
}

variable "tags" {
  description = "Tags for the policy."
  type        = map(string)
  default     = {}
}
