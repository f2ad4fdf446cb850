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
  description = "true: the hosts may add backups (never delete them: Object Lock and lifecycle retire them) in the primary region; false: read only (DR region, restore drills)."
  type        = bool
}

variable "own_pgbackrest_prefix" {
  description = "The DR region: key prefix of its own pgBackRest repository in its (replica) bucket, which it writes from a takeover's promotion on (WAL archive, base backups, expire) while the replicated repository stays read only. null: none."
  type        = string
  default     = null

  validation {
    condition     = var.own_pgbackrest_prefix == null || can(regex("^[a-z0-9][a-z0-9-]*/$", coalesce(var.own_pgbackrest_prefix, "x/")))
    error_message = "own_pgbackrest_prefix is lowercase letters, digits and dashes, ending in /."
  }
}

variable "parameter_arns" {
  description = "ARNs of the SSM parameters the hosts read (passwords, the CA certificate, the region's host certificates and keys); nothing else is readable through their key."
  type        = list(string)

  validation {
    condition     = length(var.parameter_arns) > 0 && alltrue([for a in var.parameter_arns : can(regex("^arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:parameter/", a)) && !strcontains(a, "*")])
    error_message = "parameter_arns must be exact SSM parameter ARNs (no wildcards)."
  }
}

variable "parameters_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the hosts' SecureString parameters."
  type        = string
}

variable "denied_parameter_arns" {
  description = "SSM parameters the hosts must never read (the CA's private key), denied explicitly."
  type        = list(string)
  default     = []
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary of the role (the project's: no IAM, no destroying backups); null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the role and instance profile."
  type        = map(string)
  default     = {}
}

variable "fence_object_arns" {
  description = "ARNs of the cross-region fence records in every region's backup bucket (<bucket>/<prefix>/fence/epoch.json and detach.json); the hosts read them. Empty: no fencing."
  type        = list(string)
  default     = []
}

variable "fence_epoch_object_arns" {
  description = "ARNs of the promotion epoch record (<bucket>/<prefix>/fence/epoch.json) in every fence bucket: the hosts are explicitly denied writing them (the takeover operator writes them)."
  type        = list(string)
  default     = []
}

variable "fence_detach_object_arns" {
  description = "ARNs of the DR receipt state record (<bucket>/<prefix>/fence/detach.json) in every fence bucket: the hosts write it (the writing region's dob-api detaching and re-attaching)."
  type        = list(string)
  default     = []
}

variable "fence_kms_key_arns" {
  description = "ARNs of the KMS keys of the buckets in fence_object_arns (used only through S3)."
  type        = list(string)
  default     = []
}

variable "metrics_namespace" {
  description = "CloudWatch namespace the hosts publish their figures to (scripts/publish-metrics.sh); cloudwatch:PutMetricData is allowed in it only."
  type        = string
  default     = "dob"
}

variable "pgbackrest_prefix" {
  description = "Key prefix of pgBackRest's repository in the backup bucket (WAL archive and physical backups), beside backup_prefix."
  type        = string
  default     = "pgbackrest/"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]*/$", var.pgbackrest_prefix))
    error_message = "pgbackrest_prefix is lowercase letters, digits and dashes, ending in /."
  }
}
