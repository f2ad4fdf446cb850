variable "name" {
  description = "Name prefix of the role and instance profile (e.g. `dob-eu-west-1-hosts`)."
  type        = string
}

variable "region" {
  description = "Region of the hosts (the SSM endpoint allowed to decrypt the replication password)."
  type        = string
}

variable "backup_bucket_arn" {
  description = "ARN of the bucket that holds the backups the hosts write (primary region) or read (DR region)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9.-]+$", var.backup_bucket_arn))
    error_message = "backup_bucket_arn must be an S3 bucket ARN (arn:aws:s3:::NAME)."
  }
}

variable "backup_prefix" {
  description = "Key prefix of the backups in the bucket (`DOB_S3_PREFIX`); the role reaches nothing outside it."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/?$", var.backup_prefix))
    error_message = "backup_prefix must be a non-empty S3 key prefix without a leading slash, e.g. dob/ ."
  }
}

variable "backup_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the backup bucket."
  type        = string
}

variable "backup_write" {
  description = "true: the hosts may write and delete backups (primary region); false: read only (DR region, restore drills)."
  type        = bool
}

variable "replication_password_parameter_arn" {
  description = "ARN of the SSM SecureString parameter holding the PostgreSQL replication password."
  type        = string
}

variable "secrets_parameter_arn_prefix" {
  description = "ARN prefix of the SSM SecureString parameters holding Patroni's passwords (…:parameter/dob/patroni/); empty when there are none. Encrypted with the same key as the replication password."
  type        = string
  default     = ""
}

variable "replication_password_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the replication password parameter."
  type        = string
}

variable "tags" {
  description = "Tags for the role and instance profile."
  type        = map(string)
  default     = {}
}

variable "fence_object_arns" {
  description = "ARNs of the cross-region fence record in every region's backup bucket (<bucket>/<prefix>/fence/epoch.json); the hosts read them. Empty: no fencing."
  type        = list(string)
  default     = []
}

variable "fence_write" {
  description = "Whether the hosts also write the fence records (the DR region's: dob-promote --takeover)."
  type        = bool
  default     = false
}

variable "fence_kms_key_arns" {
  description = "ARNs of the KMS keys of the buckets in fence_object_arns (used only through S3)."
  type        = list(string)
  default     = []
}
