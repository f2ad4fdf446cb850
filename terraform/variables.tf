variable "name" {
  description = "Name prefix of every resource (and the Project tag)."
  type        = string
  default     = "dob"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.name))
    error_message = "name must be 2-12 characters of a-z 0-9 -, starting with a letter (it prefixes load balancer names, which are limited to 32 characters)."
  }
}

variable "primary_region" {
  description = "Region of the primary database, its hot standby and the backups (not us-east-1: the Route53 alarms' region has a topic of its own)."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = var.primary_region != "us-east-1"
    error_message = "primary_region must not be us-east-1 (the Route53 alarms and their topic live there)."
  }
}

variable "dr_region" {
  description = "Disaster-recovery region: the cascading replica and the replica bucket (not us-east-1, as primary_region)."
  type        = string
  default     = "eu-central-1"

  validation {
    condition     = var.dr_region != "us-east-1"
    error_message = "dr_region must not be us-east-1 (the Route53 alarms and their topic live there)."
  }
}

variable "primary_azs" {
  description = "Availability zones of the primary region: database host a in the first, b in the second, the etcd witness in the third."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

  validation {
    condition     = length(var.primary_azs) >= 3 && length(var.primary_azs) == length(distinct(var.primary_azs))
    error_message = "primary_azs must list at least three distinct availability zones: the two database hosts and the etcd witness must each have their own, so that losing one AZ leaves an etcd majority."
  }
}

variable "dr_azs" {
  description = "Availability zones of the DR region; the DR host goes in the first, the load balancer spans all."
  type        = list(string)
  default     = ["eu-central-1a", "eu-central-1b"]

  validation {
    condition     = length(var.dr_azs) >= 1 && length(var.dr_azs) == length(distinct(var.dr_azs))
    error_message = "dr_azs must list at least one availability zone, each once."
  }
}

variable "primary_vpc_cidr" {
  description = "CIDR block of the primary region's VPC (a /16: subnets are carved as /24s)."
  type        = string
  default     = "10.10.0.0/16"

  validation {
    condition     = can(cidrhost(var.primary_vpc_cidr, 0)) && endswith(var.primary_vpc_cidr, "/16")
    error_message = "primary_vpc_cidr must be an IPv4 /16 such as 10.10.0.0/16."
  }
}

variable "dr_vpc_cidr" {
  description = "CIDR block of the DR region's VPC (a /16, must not overlap primary_vpc_cidr: they are peered)."
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.dr_vpc_cidr, 0)) && endswith(var.dr_vpc_cidr, "/16")
    error_message = "dr_vpc_cidr must be an IPv4 /16 such as 10.20.0.0/16."
  }
}

variable "primary_ami_id" {
  description = "dob AMI in the primary region. null: the newest AMI of this account named like ami_name_filter."
  type        = string
  default     = null
}

variable "dr_ami_id" {
  description = "dob AMI in the DR region (Packer copies it there). null: the newest AMI of this account named like ami_name_filter."
  type        = string
  default     = null
}

variable "ami_name_filter" {
  description = "Name pattern of the AMIs built by `packer build packer/`, used when an AMI ID is not given."
  type        = string
  default     = "dob-*"
}

variable "instance_type" {
  description = "EC2 instance type of the database hosts (its architecture must match the AMI's)."
  type        = string
  default     = "m6i.large"
}

variable "witness_instance_type" {
  description = "EC2 instance type of the etcd witness (etcd only; its architecture must match the AMI's)."
  type        = string
  default     = "t3.small"
}

variable "data_volume_size" {
  description = "Size of each host's encrypted PostgreSQL data volume, GiB."
  type        = number
  default     = 100
}

variable "database_name" {
  description = "PostgreSQL database of the API."
  type        = string
  default     = "dob"
}

variable "database_user" {
  description = "PostgreSQL user of the API and the backups (authenticated by the role setup, never by a password in the URL)."
  type        = string
  default     = "dob"
}

variable "backup_bucket_name" {
  description = "Globally unique name of the backup bucket in the primary region (e.g. `acme-dob-backups`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,56}[a-z0-9]$", var.backup_bucket_name))
    error_message = "backup_bucket_name must be 3-58 characters of a-z 0-9 . - ."
  }
}

variable "witness_region" {
  description = "The fence's third region: a bucket there holds the third copy of the fence records (the promotion epoch, the DR receipt state), so a change counts in two of three buckets and a partition between primary_region and dr_region cannot outvote it. Must differ from both (and from us-east-1)."
  type        = string
  default     = "eu-north-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.witness_region)) && var.witness_region != "us-east-1"
    error_message = "witness_region must be an AWS region name other than us-east-1."
  }
}

variable "witness_bucket_name" {
  description = "Globally unique name of the fence witness bucket in witness_region. null: `<backup_bucket_name>-witness`."
  type        = string
  default     = null
}

variable "replica_bucket_name" {
  description = "Globally unique name of the replica bucket in the DR region. null: `<backup_bucket_name>-<dr_region>`."
  type        = string
  default     = null
}

variable "backup_prefix" {
  description = "Key prefix of the backups in both buckets (DOB_S3_PREFIX); the hosts' IAM role reaches nothing outside it."
  type        = string
  default     = "dob/"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?$", var.backup_prefix))
    error_message = "backup_prefix must be a key prefix such as dob/ (no leading slash)."
  }
}

variable "backup_retention_days" {
  description = "Days every backup object version is locked (S3 Object Lock default retention) and after which the backups expire, in both buckets. dob-backup deletes nothing (DOB_BACKUP_KEEP=0)."
  type        = number
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 3650
    error_message = "backup_retention_days must be between 1 and 3650."
  }
}

variable "backup_lock_mode" {
  description = "Object Lock mode of the backup buckets: GOVERNANCE (only a principal with s3:BypassGovernanceRetention, which no role of this project has, can delete a backup early) or COMPLIANCE (nobody can, not even the account root, for backup_retention_days)."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.backup_lock_mode)
    error_message = "backup_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "backup_noncurrent_version_expiration_days" {
  description = "Days an expired or overwritten object version (a backup past its retention, an old fence record) is kept before deletion, in both buckets; never deleted while locked."
  type        = number
  default     = 7
}

variable "dr_backup_write" {
  description = "Let the DR host write backups into the replica bucket. false while eu-west-1 is the primary; set true after a failover so backups continue from the DR region."
  type        = bool
  default     = false
}

variable "replication_password_parameter" {
  description = "Name of the SSM SecureString parameter (both regions) holding the PostgreSQL replication password for DOB_REPLICATION_PASSWORD_PARAMETER; Terraform creates it, with the same value as <patroni_secrets_parameter_prefix>replication."
  type        = string
  default     = "/dob/replication-password"

  validation {
    condition     = can(regex("^/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.replication_password_parameter))
    error_message = "replication_password_parameter must be an absolute parameter name such as /dob/replication-password."
  }
}

variable "patroni_secrets_parameter_prefix" {
  description = "Prefix of the SSM SecureString parameters (both regions) holding the PostgreSQL and Patroni passwords (<prefix>superuser, replication, rewind, app, restapi); Terraform generates them (random_password) and creates them."
  type        = string
  default     = "/dob/patroni/"

  validation {
    condition     = can(regex("^/([A-Za-z0-9_.-]+/)+$", var.patroni_secrets_parameter_prefix))
    error_message = "patroni_secrets_parameter_prefix must be an absolute parameter path ending in /, such as /dob/patroni/."
  }
}

variable "tls_parameter_prefix" {
  description = "Prefix of the internal CA's SSM parameters: <prefix>ca.pem (both regions), <prefix>ca.key (primary region, operators only), <prefix>hosts/<host>/cert.pem and key.pem (the host's region)."
  type        = string
  default     = "/dob/tls/"

  validation {
    condition     = can(regex("^/([A-Za-z0-9_.-]+/)+$", var.tls_parameter_prefix))
    error_message = "tls_parameter_prefix must be an absolute parameter path ending in /, such as /dob/tls/."
  }
}

variable "tls_ca_validity_hours" {
  description = "Validity of the internal CA certificate, hours (87600: 10 years)."
  type        = number
  default     = 87600

  validation {
    condition     = var.tls_ca_validity_hours >= 8760
    error_message = "tls_ca_validity_hours must be at least a year (8760)."
  }
}

variable "tls_cert_validity_hours" {
  description = "Validity of each database host's certificate, hours (17520: 2 years)."
  type        = number
  default     = 17520

  validation {
    condition     = var.tls_cert_validity_hours >= 720
    error_message = "tls_cert_validity_hours must be at least 30 days (720)."
  }
}

variable "tls_cert_early_renewal_hours" {
  description = "An apply this close to a host certificate's end issues a new one, hours (720: 30 days)."
  type        = number
  default     = 720
}

variable "admin_port" {
  description = "Port of dob-api's admin listener on the hosts (DOB_ADMIN_LISTEN: /metrics, /healthz, /readyz), open to the VPC only; the load balancers' health checks go there."
  type        = number
  default     = 8090

  validation {
    condition     = var.admin_port >= 1024 && var.admin_port <= 65535 && var.admin_port != 8080
    error_message = "admin_port must be an unprivileged port other than the API's 8080."
  }
}

variable "primary_acm_certificate_arn" {
  description = "ACM certificate in the primary region for the API name (api_domain_name): the TLS listener of that region's load balancer. Required unless enable_plain_listener."
  type        = string
  default     = null

  validation {
    condition     = var.primary_acm_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.primary_acm_certificate_arn))
    error_message = "primary_acm_certificate_arn must be an ACM certificate ARN."
  }
}

variable "dr_acm_certificate_arn" {
  description = "ACM certificate in the DR region for the same name (ACM certificates are regional). Required unless enable_plain_listener."
  type        = string
  default     = null

  validation {
    condition     = var.dr_acm_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.dr_acm_certificate_arn))
    error_message = "dr_acm_certificate_arn must be an ACM certificate ARN."
  }
}

variable "enable_plain_listener" {
  description = "Also serve the API as plain TCP on port 8080 of the load balancers (and allow no certificate). Off by default: clients use TLS on 443."
  type        = bool
  default     = false
}

variable "timezone" {
  description = "IANA time zone that defines \"today\" for birthdays (DOB_TIMEZONE)."
  type        = string
  default     = "UTC"
}

variable "allowed_client_cidrs" {
  description = "Networks allowed to reach the API on the load balancers (TLS 443; TCP 8080 with enable_plain_listener). Route53 health checkers must be able to reach them for DNS failover."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_client_cidrs) >= 1 && alltrue([for c in var.allowed_client_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_client_cidrs must list at least one IPv4 CIDR block."
  }
}

variable "route53_zone_id" {
  description = "Existing Route53 hosted zone for the API name. null: no DNS records or health checks."
  type        = string
  default     = null
}

variable "api_domain_name" {
  description = "Name of the API in the hosted zone (e.g. `api.example.com`); the failover records answer for it."
  type        = string
  default     = null

  validation {
    condition     = var.api_domain_name == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.api_domain_name))
    error_message = "api_domain_name must be a lower-case DNS name such as api.example.com."
  }
}

variable "deletion_protection" {
  description = "Termination protection on the hosts and deletion protection on the load balancers. Turn off only to tear everything down."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Extra tags for every resource (Project and ManagedBy are always set)."
  type        = map(string)
  default     = {}
}

variable "github_repository" {
  description = "GitHub repository (`owner/name`) whose Actions may deploy through OIDC roles. null: no CI roles."
  type        = string
  default     = null
}

variable "github_environment" {
  description = "GitHub environment that may assume the deploy and operate roles; it must have required reviewers (the manual approval)."
  type        = string
  default     = "production"
}

variable "github_drill_environment" {
  description = "GitHub environment of the scheduled (nightly) restore-drill workflow: no required reviewers, deployment branches limited to the default branch; its role (github_ci_role_arns.drill) can only start the restore drill."
  type        = string
  default     = "restore-drill"
}

variable "terraform_state_bucket" {
  description = "Bucket of the Terraform state (backend.hcl): the deploy role may read and write it. null: grant that elsewhere."
  type        = string
  default     = null
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider; false when the account already has one."
  type        = bool
  default     = true
}

variable "alarm_email_endpoints" {
  description = "Email addresses subscribed to the alarm topics (one per region with alarms: primary_region, dr_region, us-east-1 for Route53); each address confirms each subscription by the link AWS mails. Empty: subscribe another endpoint (pager, chat) to the alarm_topic_arns outputs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_email_endpoints : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alarm_email_endpoints must be email addresses."
  }
}

variable "alarm_backup_max_age_hours" {
  description = "Alarm when the newest logical (dob-backup) or physical (pgBackRest) backup is older than this, hours."
  type        = number
  default     = 26

  validation {
    condition     = var.alarm_backup_max_age_hours >= 1
    error_message = "alarm_backup_max_age_hours must be at least 1."
  }
}

variable "alarm_drill_max_age_hours" {
  description = "Alarm when the last successful restore drill (DR host) or point-in-time recovery drill (primary region) is older than this, hours."
  type        = number
  default     = 26

  validation {
    condition     = var.alarm_drill_max_age_hours >= 1
    error_message = "alarm_drill_max_age_hours must be at least 1."
  }
}

variable "alarm_wal_archive_max_age_minutes" {
  description = "Alarm when a completed WAL segment has waited longer than this for the archive (pgBackRest archive-push), minutes."
  type        = number
  default     = 5

  validation {
    condition     = var.alarm_wal_archive_max_age_minutes >= 1
    error_message = "alarm_wal_archive_max_age_minutes must be at least 1."
  }
}

variable "alarm_replication_lag_seconds" {
  description = "Alarm when a standby replays more than this many seconds behind its upstream for 5 minutes."
  type        = number
  default     = 120

  validation {
    condition     = var.alarm_replication_lag_seconds > 0
    error_message = "alarm_replication_lag_seconds must be positive."
  }
}

variable "alarm_replication_lag_bytes" {
  description = "Alarm when a standby has more than this many bytes of its upstream's WAL left to replay for 5 minutes (default 256 MiB; the DR slot keeps at most max_slot_wal_keep_size, 20 GB)."
  type        = number
  default     = 268435456

  validation {
    condition     = var.alarm_replication_lag_bytes > 0
    error_message = "alarm_replication_lag_bytes must be positive."
  }
}

variable "operator_principal_arns" {
  description = "IAM users or roles of the people who may decide a takeover: they may assume the takeover operator role (with MFA), the only one that writes the promotion epoch and isolates a region's database tier (dob-promote --fence-init, --takeover, --lift-isolation). Empty: no such role; then nobody in this account but an administrator can take over."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.operator_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(user|role)/.+$", a))])
    error_message = "operator_principal_arns must list IAM user or role ARNs."
  }
}
