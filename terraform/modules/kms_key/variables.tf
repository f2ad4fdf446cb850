variable "alias" {
  description = "Alias of the key, without the `alias/` prefix (e.g. `dob-backups`)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9/_-]{1,250}$", var.alias)) && !startswith(var.alias, "aws/") && !startswith(var.alias, "alias/")
    error_message = "The alias must be 1-250 characters of A-Z a-z 0-9 / _ -, without the alias/ prefix, and must not start with aws/."
  }
}

variable "description" {
  description = "What the key protects; shown in the KMS console."
  type        = string
}

variable "allow_cloudwatch_logs" {
  description = "Let CloudWatch Logs in this region use the key for this account's log groups (for encrypted log groups such as VPC flow logs)."
  type        = bool
  default     = false
}

variable "allow_cloudwatch_alarms" {
  description = "Let CloudWatch alarms of this account in this region use the key (for an SNS topic encrypted with it that the alarms notify)."
  type        = bool
  default     = false
}

variable "rotation_period_in_days" {
  description = "How often KMS rotates the key material, in days (90 to 2560)."
  type        = number
  default     = 365

  validation {
    condition     = var.rotation_period_in_days >= 90 && var.rotation_period_in_days <= 2560
    error_message = "The rotation period must be between 90 and 2560 days."
  }
}

variable "deletion_window_in_days" {
  description = "Waiting period before a scheduled deletion takes effect, in days (7 to 30)."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "The deletion window must be between 7 and 30 days."
  }
}

variable "tags" {
  description = "Tags for the key."
  type        = map(string)
  default     = {}
}
