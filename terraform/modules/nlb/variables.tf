variable "name" {
  description = "Name of the load balancer and its target group (at most 32 characters)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,32}$", var.name)) && !startswith(var.name, "-") && !endswith(var.name, "-")
    error_message = "name must be 1-32 letters, digits or hyphens, not starting or ending with a hyphen."
  }
}

variable "vpc_id" {
  description = "VPC of the load balancer and its targets."
  type        = string
}

variable "vpc_cidr_block" {
  description = "CIDR block of the VPC (where the listener may send traffic)."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the load balancer, one per availability zone (public subnets when internet-facing)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "At least one subnet is needed."
  }
}

variable "internal" {
  description = "true: reachable only inside the VPC. Route53 health checks need an internet-facing load balancer."
  type        = bool
  default     = false
}

variable "allowed_client_cidrs" {
  description = "Client networks allowed to reach the listeners (Route53 health checkers must be among them for DNS failover)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "port" {
  description = "Port of the public TLS listener."
  type        = number
  default     = 443
}

variable "acm_certificate_arn" {
  description = "ACM certificate (in the load balancer's region) of the TLS listener. Required unless enable_plain_listener."
  type        = string
  default     = null

  validation {
    condition     = var.acm_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.acm_certificate_arn))
    error_message = "acm_certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID), or null."
  }
}

variable "ssl_policy" {
  description = "Security policy of the TLS listener (TLS 1.3 and 1.2 with forward secrecy only)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "enable_plain_listener" {
  description = "Also serve plain TCP on plain_port (and allow no certificate). Off by default: the public listener is TLS."
  type        = bool
  default     = false
}

variable "plain_port" {
  description = "Port of the plain TCP listener when enable_plain_listener."
  type        = number
  default     = 8080
}

variable "admin_port" {
  description = "Port of dob-api's admin listener (DOB_ADMIN_LISTEN: /readyz, /healthz, /metrics), where the health checks go."
  type        = number
  default     = 8090
}

variable "access_log_bucket" {
  description = "Access-log bucket of the region (SSE-S3, with a policy that lets log delivery write under access_log_prefix)."
  type        = string
}

variable "access_log_prefix" {
  description = "Key prefix of the load balancer's access logs in access_log_bucket (no slashes at the ends)."
  type        = string
}

variable "target_port" {
  description = "TCP port of dob-api's public listener on the hosts (it serves /hello only)."
  type        = number
  default     = 8080
}

variable "target_instance_ids" {
  description = "Instances behind the load balancer, by a stable name (e.g. { primary = \"i-...\" })."
  type        = map(string)
}

variable "health_check_path" {
  description = "HTTP path of the target health check; dob-api answers 200 only when its database answers and it is not draining."
  type        = string
  default     = "/readyz"
}

variable "health_check_interval" {
  description = "Seconds between health checks of a target (5 to 300)."
  type        = number
  default     = 10

  validation {
    condition     = var.health_check_interval >= 5 && var.health_check_interval <= 300
    error_message = "health_check_interval must be between 5 and 300 seconds."
  }
}

variable "health_check_threshold" {
  description = "Consecutive results that mark a target healthy or unhealthy (2 to 10)."
  type        = number
  default     = 2

  validation {
    condition     = var.health_check_threshold >= 2 && var.health_check_threshold <= 10
    error_message = "health_check_threshold must be between 2 and 10."
  }
}

variable "deregistration_delay" {
  description = "Seconds a deregistered target keeps its open connections."
  type        = number
  default     = 30
}

variable "enable_deletion_protection" {
  description = "Refuse to delete the load balancer through the API."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource of the load balancer."
  type        = map(string)
  default     = {}
}
