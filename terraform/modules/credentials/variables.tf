variable "name" {
  description = "Project name: the CA's subject and the certificates' organisation."
  type        = string
}

variable "hosts" {
  description = "Database hosts (every host that runs PostgreSQL or etcd), by key: the region role they live in (`primary` or `dr`), their name, fixed private address, extra addresses and DNS names for their certificate."
  type = map(object({
    region             = string
    name               = string
    private_ip         = string
    extra_ip_addresses = optional(list(string), [])
    dns_names          = optional(list(string), [])
  }))

  validation {
    condition     = alltrue([for h in values(var.hosts) : contains(["primary", "dr"], h.region)])
    error_message = "Each host's region must be primary or dr."
  }

  validation {
    condition     = alltrue([for k in keys(var.hosts) : can(regex("^[a-z0-9-]+$", k))])
    error_message = "Host keys must be a-z 0-9 - (they are part of SSM parameter names)."
  }
}

variable "secrets_parameter_prefix" {
  description = "Prefix of the password parameters (<prefix>superuser, replication, rewind, app, restapi), in both regions."
  type        = string

  validation {
    condition     = can(regex("^/([A-Za-z0-9_.-]+/)+$", var.secrets_parameter_prefix))
    error_message = "secrets_parameter_prefix must be an absolute parameter path ending in /, such as /dob/patroni/."
  }
}

variable "replication_password_parameter" {
  description = "Name of the parameter that holds the replication password again for DOB_REPLICATION_PASSWORD_PARAMETER, in both regions."
  type        = string
}

variable "tls_parameter_prefix" {
  description = "Prefix of the TLS parameters: <prefix>ca.pem (both regions), <prefix>ca.key (primary region), <prefix>hosts/<host>/cert.pem and key.pem (the host's region)."
  type        = string

  validation {
    condition     = can(regex("^/([A-Za-z0-9_.-]+/)+$", var.tls_parameter_prefix))
    error_message = "tls_parameter_prefix must be an absolute parameter path ending in /, such as /dob/tls/."
  }
}

variable "primary_kms_key_arn" {
  description = "KMS key of the primary region's host secrets (the hosts decrypt through SSM)."
  type        = string
}

variable "dr_kms_key_arn" {
  description = "KMS key of the DR region's host secrets (the hosts decrypt through SSM)."
  type        = string
}

variable "operators_kms_key_arn" {
  description = "KMS key of the CA's private key, in the primary region: no host role may use it."
  type        = string
}

variable "ca_validity_hours" {
  description = "Validity of the internal CA certificate, hours."
  type        = number
  default     = 87600
}

variable "ca_early_renewal_hours" {
  description = "An apply this close to the CA's end re-creates it (and so every host certificate), hours."
  type        = number
  default     = 8760
}

variable "cert_validity_hours" {
  description = "Validity of each host certificate, hours."
  type        = number
  default     = 17520
}

variable "cert_early_renewal_hours" {
  description = "An apply this close to a host certificate's end issues a new one, hours."
  type        = number
  default     = 720
}

variable "tags" {
  description = "Tags for every parameter."
  type        = map(string)
  default     = {}
}
