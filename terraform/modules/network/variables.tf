variable "name" {
  description = "Name prefix of every resource in this network (e.g. `dob-eu-west-1`)."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 CIDR block of the VPC. Must not overlap a VPC it is peered with."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr_block, 0))
    error_message = "cidr_block must be an IPv4 CIDR block such as 10.10.0.0/16."
  }
}

variable "azs" {
  description = "Availability zones to spread the subnets over, one private and one public subnet in each."
  type        = list(string)

  validation {
    condition     = length(var.azs) >= 1 && length(var.azs) == length(distinct(var.azs))
    error_message = "azs must list at least one availability zone, each once."
  }
}

variable "private_subnet_cidrs" {
  description = "CIDR blocks of the private (host) subnets, one per entry of `azs`, in the same order."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.private_subnet_cidrs : can(cidrhost(c, 0))])
    error_message = "Every private subnet CIDR must be an IPv4 CIDR block."
  }
}

variable "public_subnet_cidrs" {
  description = "CIDR blocks of the public (load balancer) subnets, one per entry of `azs`, in the same order."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.public_subnet_cidrs : can(cidrhost(c, 0))])
    error_message = "Every public subnet CIDR must be an IPv4 CIDR block."
  }
}

variable "interface_endpoints" {
  description = "AWS services reached through interface VPC endpoints from the private subnets (S3 always has a gateway endpoint): SSM and Session Manager, and CloudWatch metrics (monitoring: the hosts publish the alarms' figures)."
  type        = list(string)
  default     = ["ssm", "ssmmessages", "ec2messages", "monitoring"]
}

variable "s3_peer_cidr_blocks" {
  description = "CIDR blocks of peered VPCs (the other region) whose hosts reach this region's S3 through an interface endpoint here, for the cross-region fence record; empty: no such endpoint."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.s3_peer_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "s3_peer_cidr_blocks must be IPv4 CIDR blocks of peered VPCs, never 0.0.0.0/0."
  }
}

variable "witness_region" {
  description = "The fence's witness region: an interface endpoint here reaches its S3 (the witness bucket) across regions. Empty: none."
  type        = string
  default     = ""
}

variable "fence_group" {
  description = "The tag `dob:fence-group` on the private subnets (and `dob:fence-acl` on their isolation network ACL): what dob-promote --takeover in the other region isolates. Empty: no isolation ACL, no EC2 endpoint for the peer."
  type        = string
  default     = ""
}

variable "flow_log_retention_days" {
  description = "How long VPC flow logs are kept, in days (a CloudWatch Logs retention value)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "flow_log_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the flow log group (its policy must allow CloudWatch Logs)."
  type        = string
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary of the flow-log role (the project's); null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource of the network."
  type        = map(string)
  default     = {}
}
