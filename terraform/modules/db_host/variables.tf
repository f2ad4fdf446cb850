variable "name" {
  description = "Name of the host (e.g. `dob-eu-west-1-primary`); prefixes its security group and volume."
  type        = string
}

variable "role" {
  description = "What the host is at first boot, written as DOB_ROLE: with Patroni, `patroni` (a database host of the primary region), `witness` (its third etcd member) or `dr-standby` (the DR region's standby cluster); without, `primary`, `replica` or `dr-replica`."
  type        = string

  validation {
    condition     = contains(["patroni", "witness", "dr-standby", "primary", "replica", "dr-replica"], var.role)
    error_message = "role must be one of patroni, witness, dr-standby, primary, replica, dr-replica."
  }
}

variable "ami_id" {
  description = "AMI to boot. null: the newest AMI owned by `ami_owners` whose name matches `ami_name_filter`."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0, or be null."
  }
}

variable "ami_name_filter" {
  description = "Name pattern of the dob AMI built by `packer build packer/` (used when ami_id is null)."
  type        = string
  default     = "dob-*"
}

variable "ami_owners" {
  description = "Accounts whose AMIs may be used (used when ami_id is null)."
  type        = list(string)
  default     = ["self"]
}

variable "instance_type" {
  description = "EC2 instance type (Nitro recommended; the AMI's architecture must match)."
  type        = string
  default     = "m6i.large"
}

variable "subnet_id" {
  description = "Private subnet of the host; its availability zone is also the data volume's."
  type        = string
}

variable "private_ip" {
  description = "Fixed private IPv4 address of the host inside the subnet (peers and DOB_DATABASE_URL name it)."
  type        = string

  validation {
    condition     = can(regex("^(\\d{1,3}\\.){3}\\d{1,3}$", var.private_ip))
    error_message = "private_ip must be an IPv4 address."
  }
}

variable "vpc_cidr_block" {
  description = "CIDR block of the host's VPC (egress to the interface endpoints)."
  type        = string
}

variable "s3_prefix_list_id" {
  description = "Prefix list of the VPC's S3 gateway endpoint (egress to S3)."
  type        = string
}

variable "iam_instance_profile" {
  description = "Instance profile of the host (see modules/host_role)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the root and data volumes."
  type        = string
}

variable "termination_protection" {
  description = "Refuse API termination of the instance (turn off before replacing a host on purpose)."
  type        = bool
  default     = true
}

variable "root_volume_size" {
  description = "Size of the encrypted root volume, GiB."
  type        = number
  default     = 16

  validation {
    condition     = var.root_volume_size >= 8
    error_message = "The root volume needs at least 8 GiB."
  }
}

variable "data_volume_size" {
  description = "Size of the encrypted PostgreSQL data volume (mounted on /var/lib/postgresql), GiB."
  type        = number
  default     = 100

  validation {
    condition     = var.data_volume_size >= 10 && var.data_volume_size <= 16384
    error_message = "data_volume_size must be between 10 and 16384 GiB."
  }
}

variable "data_volume_iops" {
  description = "Provisioned IOPS of the gp3 data volume (3000 to 16000)."
  type        = number
  default     = 3000

  validation {
    condition     = var.data_volume_iops >= 3000 && var.data_volume_iops <= 16000
    error_message = "gp3 IOPS must be between 3000 and 16000."
  }
}

variable "data_volume_throughput" {
  description = "Throughput of the gp3 data volume, MiB/s (125 to 1000)."
  type        = number
  default     = 125

  validation {
    condition     = var.data_volume_throughput >= 125 && var.data_volume_throughput <= 1000
    error_message = "gp3 throughput must be between 125 and 1000 MiB/s."
  }
}

variable "data_device_name" {
  description = "Device name the data volume is attached as (`/dev/sd[f-p]`)."
  type        = string
  default     = "/dev/sdf"

  validation {
    condition     = can(regex("^/dev/sd[f-p]$", var.data_device_name))
    error_message = "data_device_name must be one of /dev/sdf ... /dev/sdp."
  }
}

variable "api_port" {
  description = "TCP port of dob-api's public listener (dob-api.socket; /hello only)."
  type        = number
  default     = 8080
}

variable "admin_port" {
  description = "DOB_ADMIN_LISTEN port: dob-api's /metrics, /healthz and /readyz, open to the VPC only (the load balancer's health checks)."
  type        = number
  default     = 8090

  validation {
    condition     = var.admin_port >= 1024 && var.admin_port <= 65535 && var.admin_port != 8080
    error_message = "admin_port must be an unprivileged port other than the API's 8080."
  }
}

variable "api_source_security_group_id" {
  description = "Security group allowed to reach the API port: the network load balancer's."
  type        = string
}

variable "postgres_peer_cidrs" {
  description = "The only sources (and destinations) allowed on port 5432: the other database hosts, as /32 CIDRs. Never 0.0.0.0/0."
  type        = list(string)

  validation {
    condition = alltrue([
      for c in var.postgres_peer_cidrs : can(cidrhost(c, 0)) && tonumber(split("/", c)[1]) >= 16
    ])
    error_message = "postgres_peer_cidrs must be IPv4 CIDR blocks no wider than /16 (host peers, e.g. 10.10.2.10/32); 0.0.0.0/0 is refused."
  }
}

variable "etcd_peer_cidrs" {
  description = "Patroni roles and the witness: the other etcd members, as /32 CIDRs. etcd's client (2379) and peer (2380) ports are open between them and nobody else."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.etcd_peer_cidrs : can(cidrhost(c, 0)) && endswith(c, "/32")])
    error_message = "etcd_peer_cidrs must be host addresses as /32 CIDRs."
  }
}

variable "patroni_peer_cidrs" {
  description = "Patroni roles: the other members of the Patroni cluster, as /32 CIDRs. Patroni's REST API (8008) is open between them and nobody else (the load balancer checks dob-api's /readyz, not Patroni)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.patroni_peer_cidrs : can(cidrhost(c, 0)) && endswith(c, "/32")])
    error_message = "patroni_peer_cidrs must be host addresses as /32 CIDRs."
  }
}

# --- /etc/dob/dob.env ---------------------------------------------------------------------

variable "database_url" {
  description = "DOB_DATABASE_URL: PostgreSQL URL of the API and the backups; several hosts with target_session_attrs=read-write in the primary region. No password in it, and sslmode=verify-full (the hosts' certificates name their addresses)."
  type        = string

  validation {
    condition     = can(regex("^postgres(ql)?://[^:@/\\s]+@[^\\s]+$", var.database_url))
    error_message = "database_url must be postgresql://USER@HOST[:PORT][,HOST...]/DB[?...] with no password and no whitespace."
  }

  validation {
    condition     = can(regex("[?&]sslmode=verify-full(&|$)", var.database_url))
    error_message = "database_url must ask for sslmode=verify-full: the hosts verify the server against the internal CA (DOB_DATABASE_CA_FILE)."
  }
}

variable "listen" {
  description = "DOB_LISTEN: listen address when dob-api runs without its systemd socket."
  type        = string
  default     = "0.0.0.0:8080"
}

variable "timezone" {
  description = "DOB_TIMEZONE: IANA time zone that defines \"today\" for birthdays."
  type        = string
  default     = "UTC"
}

variable "drain_seconds" {
  description = "DOB_DRAIN_SECONDS: how long /readyz answers 503 after SIGTERM before dob-api stops (longer than the load balancer needs to mark the host unhealthy)."
  type        = number
  default     = 25

  validation {
    condition     = var.drain_seconds >= 0 && var.drain_seconds < 60
    error_message = "drain_seconds must be between 0 and 59: dob-api.service allows 60 s to stop."
  }
}

variable "s3_bucket" {
  description = "DOB_S3_BUCKET: the backup bucket of the host's region."
  type        = string
}

variable "s3_prefix" {
  description = "DOB_S3_PREFIX: key prefix of the backups."
  type        = string
}

variable "s3_region" {
  description = "DOB_S3_REGION: region of the backup bucket."
  type        = string
}

variable "s3_kms_key_id" {
  description = "DOB_S3_KMS_KEY_ID: ARN of the KMS key of the backup bucket (DOB_S3_SSE is always aws:kms)."
  type        = string
}

variable "primary_host" {
  description = "DOB_PRIMARY_HOST: the upstream a replica streams from (null on the primary)."
  type        = string
  default     = null
}

variable "replica_cidrs" {
  description = "DOB_REPLICA_CIDRS: the hosts allowed to replicate from this one (pg_hba), as CIDRs."
  type        = list(string)
}

variable "replication_password_file" {
  description = "DOB_REPLICATION_PASSWORD_FILE: where dob-role-setup writes the replication password it reads from SSM."
  type        = string
  default     = "/etc/dob/replication-password"
}

variable "replication_password_parameter" {
  description = "DOB_REPLICATION_PASSWORD_PARAMETER: name of the SSM SecureString parameter holding the replication password."
  type        = string
}

variable "etcd_initial_cluster" {
  description = "DOB_ETCD_INITIAL_CLUSTER: Patroni roles and the witness, the etcd members as name=http://address:2380,... (the DR standby cluster: its one member). Empty for the other roles."
  type        = string
  default     = ""
}

variable "etcd_name" {
  description = "DOB_ETCD_NAME: this host's member name in etcd_initial_cluster."
  type        = string
  default     = ""
}

variable "standby_of" {
  description = "DOB_STANDBY_OF: dr-standby, the primary region's database hosts (a,b) the standby cluster follows."
  type        = string
  default     = ""
}

variable "secrets_parameter_prefix" {
  description = "DOB_SECRETS_PARAMETER_PREFIX: Patroni roles, the SSM SecureString parameters <prefix>superuser, replication, rewind, app and restapi."
  type        = string
  default     = ""
}

variable "fence_buckets" {
  description = "DOB_FENCE_BUCKETS: every region's backup bucket (bucket@region,...) for cross-region write fencing; empty leaves it off."
  type        = string
  default     = ""
}

variable "fence_peer_cidr" {
  description = "CIDR block of the other region's VPC, where its S3 interface endpoint is: HTTPS egress there for the fence record. Empty without fencing."
  type        = string
  default     = ""
}

variable "peer_hosts" {
  description = "DOB_PEER_HOSTS: the other region's database hosts (comma list), which dob-promote --follow makes this cluster a standby cluster of once the fence names the other region the writer. Empty: --follow refuses."
  type        = string
  default     = ""
}

variable "fence_group" {
  description = "The tag `dob:fence-group` on this instance: a takeover in the other region stops the instances of this group (its database tier). Empty: no tag."
  type        = string
  default     = ""
}

variable "peer_region" {
  description = "DOB_PEER_REGION: the other region, whose database tier dob-promote --takeover isolates through its EC2 API before promoting here."
  type        = string
  default     = ""
}

variable "peer_fence_group" {
  description = "DOB_PEER_FENCE_GROUP: the other region's `dob:fence-group`. Empty: no isolation configured (a takeover here then needs --old-region-unfenced)."
  type        = string
  default     = ""
}

variable "peer_ec2_endpoint" {
  description = "DOB_PEER_EC2_ENDPOINT: the other region's EC2 API through its interface endpoint across the peering (the hosts have no route to the internet)."
  type        = string
  default     = ""
}

variable "dr_receipt_slot" {
  description = "DOB_DR_RECEIPT_SLOT: the DR region's replication slot on this cluster; dob-api answers a PUT 204 only once it has flushed the commit. Empty: no DR receipt."
  type        = string
  default     = ""
}

variable "fence_home_region" {
  description = "DOB_FENCE_HOME_REGION: the region dob-promote --fence-init names in epoch 0 (the writer until a takeover)."
  type        = string
  default     = ""
}

variable "tls_ca_parameter" {
  description = "DOB_TLS_CA_PARAMETER: SSM name of the internal CA certificate (PEM), in the host's region."
  type        = string
}

variable "tls_cert_parameter" {
  description = "DOB_TLS_CERT_PARAMETER: SSM name of this host's certificate (PEM), in the host's region."
  type        = string
}

variable "tls_key_parameter" {
  description = "DOB_TLS_KEY_PARAMETER: SSM name of this host's private key (PEM, SecureString), in the host's region."
  type        = string
}

variable "tags" {
  description = "Tags for every resource of the host."
  type        = map(string)
  default     = {}
}
