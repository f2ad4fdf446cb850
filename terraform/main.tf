# dob in two regions.
#
#   eu-west-1 (primary)   VPC, private subnets in two AZs, hosts `primary` (AZ a) and
#                         `replica` (AZ b) behind an NLB, the backup bucket.
#   eu-central-1 (DR)     VPC, host `dr` (a cascading streaming replica) behind its own NLB,
#                         the replica bucket (S3 cross-region replication).
#   between them          VPC peering for streaming replication; Route53 failover records
#                         (PRIMARY: the eu-west-1 NLB, SECONDARY: the eu-central-1 NLB),
#                         (TCP checks of the NLBs' TLS listeners, and the NLBs' own
#                         target health, which checks /readyz on the hosts' admin port).
#
# Every host boots the same AMI (packer/); user data only mounts the data volume, writes
# /etc/dob/dob.env and starts the units of the host's role. Passwords, the internal CA and
# each database host's certificate are generated here (modules/credentials) and handed
# over through SSM Parameter Store.

data "aws_caller_identity" "current" {
  provider = aws.primary
}

data "aws_partition" "current" {
  provider = aws.primary
}

locals {
  tags = merge(var.tags, {
    Project   = var.name
    ManagedBy = "terraform"
  })

  primary_private_cidrs = [for i, _ in var.primary_azs : cidrsubnet(var.primary_vpc_cidr, 8, i)]
  primary_public_cidrs  = [for i, _ in var.primary_azs : cidrsubnet(var.primary_vpc_cidr, 8, 100 + i)]
  dr_private_cidrs      = [for i, _ in var.dr_azs : cidrsubnet(var.dr_vpc_cidr, 8, i)]
  dr_public_cidrs       = [for i, _ in var.dr_azs : cidrsubnet(var.dr_vpc_cidr, 8, 100 + i)]

  # Fixed addresses: the peers, pg_hba and DOB_DATABASE_URL name hosts by address.
  primary_ip = cidrhost(local.primary_private_cidrs[0], 10)
  replica_ip = cidrhost(local.primary_private_cidrs[1], 10)
  witness_ip = cidrhost(local.primary_private_cidrs[2], 10)
  dr_ip      = cidrhost(local.dr_private_cidrs[0], 10)

  # The primary region's etcd: one member per AZ, so losing any one AZ leaves a majority.
  etcd_members = {
    a       = local.primary_ip
    b       = local.replica_ip
    witness = local.witness_ip
  }
  etcd_initial_cluster = join(",", [for name, ip in local.etcd_members : "${name}=http://${ip}:2380"])
  etcd_peer_cidrs = {
    for name, ip in local.etcd_members : name => [for other, other_ip in local.etcd_members : "${other_ip}/32" if other != name]
  }

  host_cidrs = {
    primary = "${local.primary_ip}/32"
    replica = "${local.replica_ip}/32"
    dr      = "${local.dr_ip}/32"
  }
  # Each host talks PostgreSQL with the two others only: the API and streaming replication
  # today, and the reversed directions after a failover.
  peer_cidrs = { for host, _ in local.host_cidrs : host => [for other, cidr in local.host_cidrs : cidr if other != host] }

  # In the primary region the API and the backups follow whichever host is writable. The
  # server is verified against the internal CA: its certificate names its address.
  primary_region_database_url = "postgresql://${var.database_user}@${local.primary_ip}:5432,${local.replica_ip}:5432/${var.database_name}?target_session_attrs=read-write&sslmode=verify-full"
  # In the DR region the local replica: read-only until promoted, then the primary. Its
  # certificate also names 127.0.0.1 for this.
  dr_database_url = "postgresql://${var.database_user}@127.0.0.1:5432/${var.database_name}?sslmode=verify-full"

  backup_prefix = trimsuffix(var.backup_prefix, "/")

  replica_bucket_name = coalesce(var.replica_bucket_name, "${var.backup_bucket_name}-${var.dr_region}")
  witness_bucket_name = coalesce(var.witness_bucket_name, "${var.backup_bucket_name}-witness")

  # Release binaries for the rolling restart, one bucket per region (hosts download through
  # their own region's S3 gateway endpoint).
  release_bucket_names = {
    primary = "${var.name}-releases-${data.aws_caller_identity.current.account_id}-${var.primary_region}"
    dr      = "${var.name}-releases-${data.aws_caller_identity.current.account_id}-${var.dr_region}"
  }

  # The cross-region fence (src/failover/fence.rs, docs/failover.md): the records (the
  # promotion epoch and the DR receipt state) in both backup buckets; each region reads the
  # other's through that region's S3 interface endpoint, across the peering.
  fence_keys = ["${local.backup_prefix}/fence/epoch.json", "${local.backup_prefix}/fence/detach.json"]
  fence_bucket_arns = [
    module.backup_bucket.bucket_arn,
    module.backup_bucket.replica_bucket_arn,
    module.witness_bucket.arn,
  ]
  fence_object_arns        = flatten([for key in local.fence_keys : [for b in local.fence_bucket_arns : "${b}/${key}"]])
  fence_epoch_object_arns  = [for b in local.fence_bucket_arns : "${b}/${local.fence_keys[0]}"]
  fence_detach_object_arns = [for b in local.fence_bucket_arns : "${b}/${local.fence_keys[1]}"]
  fence_kms_key_arns       = [module.backup_bucket.kms_key_arn, module.backup_bucket.replica_kms_key_arn, module.witness_bucket.kms_key_arn]
  # The witness, as both regions' hosts reach it: a cross-region S3 interface endpoint in
  # their own VPC (modules/network).
  primary_witness_bucket = "${local.witness_bucket_name}@${var.witness_region}=${module.primary_network.s3_witness_endpoint_url}"
  dr_witness_bucket      = "${local.witness_bucket_name}@${var.witness_region}=${module.dr_network.s3_witness_endpoint_url}"
  # Each region's database tier, as a takeover in the other region isolates it
  # (dob:fence-group on its private subnets and hosts, dob:fence-acl on its isolation ACL).
  primary_fence_group = "${var.name}-${var.primary_region}-db"
  dr_fence_group      = "${var.name}-${var.dr_region}-db"
  primary_fence_buckets = join(",", [
    "${module.backup_bucket.bucket_name}@${var.primary_region}",
    "${module.backup_bucket.replica_bucket_name}@${var.dr_region}=${module.dr_network.s3_peer_endpoint_url}",
    local.primary_witness_bucket,
  ])
  dr_fence_buckets = join(",", [
    "${module.backup_bucket.bucket_name}@${var.primary_region}=${module.primary_network.s3_peer_endpoint_url}",
    "${module.backup_bucket.replica_bucket_name}@${var.dr_region}",
    local.dr_witness_bucket,
  ])


  # Every host that runs PostgreSQL or etcd gets a certificate for its fixed address and
  # its EC2 private DNS name.
  private_dns_suffix = {
    primary = var.primary_region == "us-east-1" ? "ec2.internal" : "${var.primary_region}.compute.internal"
    dr      = var.dr_region == "us-east-1" ? "ec2.internal" : "${var.dr_region}.compute.internal"
  }
  database_hosts = {
    primary = { region = "primary", name = "${var.name}-${var.primary_region}-primary", private_ip = local.primary_ip }
    replica = { region = "primary", name = "${var.name}-${var.primary_region}-replica", private_ip = local.replica_ip }
    witness = { region = "primary", name = "${var.name}-${var.primary_region}-witness", private_ip = local.witness_ip }
    dr      = { region = "dr", name = "${var.name}-${var.dr_region}-dr", private_ip = local.dr_ip }
  }

  # Load balancer access logs in each region's access-log bucket, under nlb/<lb name>.
  nlb_names = {
    primary = "${var.name}-${var.primary_region}"
    dr      = "${var.name}-${var.dr_region}"
  }
  nlb_log_prefixes = { for k, n in local.nlb_names : k => "nlb/${n}" }

}

# --- keys: EBS volumes and the hosts' parameters; operators' secrets; flow logs -----------

module "primary_hosts_key" {
  source    = "./modules/kms_key"
  providers = { aws = aws.primary }

  alias       = "${var.name}-hosts"
  description = "dob hosts in ${var.primary_region}: EBS volumes and the hosts' SSM parameters (passwords, TLS keys)"
}

# The CA's private key: operators only. No host role is granted this key.
module "operators_key" {
  source    = "./modules/kms_key"
  providers = { aws = aws.primary }

  alias       = "${var.name}-operators"
  description = "dob operators' secrets in ${var.primary_region}: the internal CA's private key"
}

module "primary_logs_key" {
  source    = "./modules/kms_key"
  providers = { aws = aws.primary }

  alias                 = "${var.name}-logs"
  description           = "dob VPC flow logs in ${var.primary_region}"
  allow_cloudwatch_logs = true
}

module "dr_hosts_key" {
  source    = "./modules/kms_key"
  providers = { aws = aws.dr }

  alias       = "${var.name}-hosts"
  description = "dob hosts in ${var.dr_region}: EBS volumes and the hosts' SSM parameters (passwords, TLS keys)"
}

module "dr_logs_key" {
  source    = "./modules/kms_key"
  providers = { aws = aws.dr }

  alias                 = "${var.name}-logs"
  description           = "dob VPC flow logs in ${var.dr_region}"
  allow_cloudwatch_logs = true
}

# --- networks ----------------------------------------------------------------------------

module "primary_network" {
  source    = "./modules/network"
  providers = { aws = aws.primary }

  name                     = "${var.name}-${var.primary_region}"
  cidr_block               = var.primary_vpc_cidr
  azs                      = var.primary_azs
  private_subnet_cidrs     = local.primary_private_cidrs
  public_subnet_cidrs      = local.primary_public_cidrs
  flow_log_kms_key_arn     = module.primary_logs_key.key_arn
  s3_peer_cidr_blocks      = [var.dr_vpc_cidr]
  witness_region           = var.witness_region
  fence_group              = local.primary_fence_group
  permissions_boundary_arn = module.permissions_boundary.arn
}

module "dr_network" {
  source    = "./modules/network"
  providers = { aws = aws.dr }

  name                     = "${var.name}-${var.dr_region}"
  cidr_block               = var.dr_vpc_cidr
  azs                      = var.dr_azs
  private_subnet_cidrs     = local.dr_private_cidrs
  public_subnet_cidrs      = local.dr_public_cidrs
  flow_log_kms_key_arn     = module.dr_logs_key.key_arn
  s3_peer_cidr_blocks      = [var.primary_vpc_cidr]
  witness_region           = var.witness_region
  fence_group              = local.dr_fence_group
  permissions_boundary_arn = module.permissions_boundary.arn
}

module "peering" {
  source = "./modules/vpc_peering"
  providers = {
    aws.requester = aws.primary
    aws.accepter  = aws.dr
  }

  name                      = "${var.name}-${var.primary_region}-${var.dr_region}"
  requester_vpc_id          = module.primary_network.vpc_id
  requester_cidr_block      = module.primary_network.vpc_cidr_block
  requester_route_table_ids = [module.primary_network.private_route_table_id]
  accepter_vpc_id           = module.dr_network.vpc_id
  accepter_cidr_block       = module.dr_network.vpc_cidr_block
  accepter_route_table_ids  = [module.dr_network.private_route_table_id]
}

# --- backups -------------------------------------------------------------------------------

# The fence's third vote (docs/design.md, "Why a partition cannot outvote the fence"): the
# fence records only, in a region of their own. The hosts of both regions read it and the
# DR host writes it (dob-promote --fence-init, --takeover), through a cross-region S3
# interface endpoint in their own VPC; every write is conditional, every version locked.
module "witness_bucket" {
  source    = "./modules/kms_bucket"
  providers = { aws = aws.witness }

  bucket_name                            = local.witness_bucket_name
  key_alias                              = "${var.name}-fence-witness"
  key_description                        = "dob fence records (third copy) in s3://${local.witness_bucket_name}"
  noncurrent_version_expiration_days     = var.backup_noncurrent_version_expiration_days
  abort_incomplete_multipart_upload_days = 1
  object_lock_mode                       = var.backup_lock_mode
  object_lock_retention_days             = var.backup_retention_days
  access_log_retention_days              = 365
  tags                                   = local.tags
}

module "backup_bucket" {
  source = "./modules/backup_bucket"
  providers = {
    aws.source  = aws.primary
    aws.replica = aws.dr
  }

  name                                 = var.name
  bucket_name                          = var.backup_bucket_name
  replica_bucket_name                  = local.replica_bucket_name
  backup_prefix                        = var.backup_prefix
  retention_days                       = var.backup_retention_days
  object_lock_mode                     = var.backup_lock_mode
  noncurrent_version_expiration_days   = var.backup_noncurrent_version_expiration_days
  source_region_log_sources            = [local.release_bucket_names.primary]
  replica_region_log_sources           = [local.release_bucket_names.dr]
  source_region_log_delivery_prefixes  = [local.nlb_log_prefixes.primary]
  replica_region_log_delivery_prefixes = [local.nlb_log_prefixes.dr]
  permissions_boundary_arn             = module.permissions_boundary.arn
}

module "primary_release_bucket" {
  source    = "./modules/release_bucket"
  providers = { aws = aws.primary }

  name              = var.name
  bucket_name       = local.release_bucket_names.primary
  access_log_bucket = module.backup_bucket.access_log_bucket_names.source
}

module "dr_release_bucket" {
  source    = "./modules/release_bucket"
  providers = { aws = aws.dr }

  name              = var.name
  bucket_name       = local.release_bucket_names.dr
  access_log_bucket = module.backup_bucket.access_log_bucket_names.replica
}

# --- credentials: passwords, the internal CA, the database hosts' certificates -------------

module "credentials" {
  source = "./modules/credentials"
  providers = {
    aws.primary = aws.primary
    aws.dr      = aws.dr
  }

  name                           = var.name
  secrets_parameter_prefix       = var.patroni_secrets_parameter_prefix
  replication_password_parameter = var.replication_password_parameter
  tls_parameter_prefix           = var.tls_parameter_prefix
  primary_kms_key_arn            = module.primary_hosts_key.key_arn
  dr_kms_key_arn                 = module.dr_hosts_key.key_arn
  operators_kms_key_arn          = module.operators_key.key_arn
  ca_validity_hours              = var.tls_ca_validity_hours
  cert_validity_hours            = var.tls_cert_validity_hours
  cert_early_renewal_hours       = var.tls_cert_early_renewal_hours
  hosts = {
    for key, h in local.database_hosts : key => merge(h, {
      # The DR host's own DOB_DATABASE_URL names 127.0.0.1; the others use their address.
      extra_ip_addresses = key == "dr" ? ["127.0.0.1"] : []
      dns_names          = ["ip-${replace(h.private_ip, ".", "-")}.${local.private_dns_suffix[h.region]}"]
    })
  }
}

# --- the permissions boundary of every workload role ----------------------------------------

module "permissions_boundary" {
  source    = "./modules/permissions_boundary"
  providers = { aws = aws.primary } # IAM is global.

  name = var.name
  backup_bucket_arns = [
    "arn:${data.aws_partition.current.partition}:s3:::${var.backup_bucket_name}",
    "arn:${data.aws_partition.current.partition}:s3:::${local.replica_bucket_name}",
    "arn:${data.aws_partition.current.partition}:s3:::${local.witness_bucket_name}",
  ]
}

# --- host roles ----------------------------------------------------------------------------

module "primary_host_role" {
  source    = "./modules/host_role"
  providers = { aws = aws.primary }

  name                     = "${var.name}-${var.primary_region}-hosts"
  region                   = var.primary_region
  backup_bucket_arn        = module.backup_bucket.bucket_arn
  backup_prefix            = var.backup_prefix
  backup_kms_key_arn       = module.backup_bucket.kms_key_arn
  backup_write             = true
  parameter_arns           = module.credentials.parameter_arns.primary
  parameters_kms_key_arn   = module.primary_hosts_key.key_arn
  denied_parameter_arns    = [module.credentials.ca_key_parameter_arn]
  fence_object_arns        = local.fence_object_arns
  fence_detach_object_arns = local.fence_detach_object_arns
  fence_epoch_object_arns  = local.fence_epoch_object_arns
  fence_kms_key_arns       = local.fence_kms_key_arns
  permissions_boundary_arn = module.permissions_boundary.arn
}

# The person deciding a takeover: the promotion epoch and the isolation of a region's
# database tier, nothing a host role may do (docs/failover.md, "Who decides").
module "takeover_operator" {
  source    = "./modules/takeover_operator"
  providers = { aws = aws.primary } # IAM is global.

  name                    = "${var.name}-takeover-operator"
  operator_principal_arns = var.operator_principal_arns
  fence_object_arns       = local.fence_object_arns
  fence_kms_key_arns      = local.fence_kms_key_arns
  isolation_peers = [
    { region = var.primary_region, vpc_arn = module.primary_network.vpc_arn, group = local.primary_fence_group },
    { region = var.dr_region, vpc_arn = module.dr_network.vpc_arn, group = local.dr_fence_group },
  ]
  permissions_boundary_arn = module.permissions_boundary.arn
}

module "dr_host_role" {
  source    = "./modules/host_role"
  providers = { aws = aws.primary } # IAM is global; the role serves the DR host.

  name                   = "${var.name}-${var.dr_region}-hosts"
  region                 = var.dr_region
  backup_bucket_arn      = module.backup_bucket.replica_bucket_arn
  backup_prefix          = var.backup_prefix
  backup_kms_key_arn     = module.backup_bucket.replica_kms_key_arn
  backup_write           = var.dr_backup_write
  own_pgbackrest_prefix  = "pgbackrest-dr/"
  parameter_arns         = module.credentials.parameter_arns.dr
  parameters_kms_key_arn = module.dr_hosts_key.key_arn
  # The CA key lives in the primary region; a role's GetParameter reaches every region.
  denied_parameter_arns    = [module.credentials.ca_key_parameter_arn]
  fence_object_arns        = local.fence_object_arns
  fence_detach_object_arns = local.fence_detach_object_arns
  fence_epoch_object_arns  = local.fence_epoch_object_arns
  fence_kms_key_arns       = local.fence_kms_key_arns
  permissions_boundary_arn = module.permissions_boundary.arn
}

# --- load balancers ------------------------------------------------------------------------

module "primary_nlb" {
  source    = "./modules/nlb"
  providers = { aws = aws.primary }

  name                       = local.nlb_names.primary
  vpc_id                     = module.primary_network.vpc_id
  vpc_cidr_block             = module.primary_network.vpc_cidr_block
  subnet_ids                 = module.primary_network.public_subnet_ids
  allowed_client_cidrs       = var.allowed_client_cidrs
  enable_deletion_protection = var.deletion_protection
  acm_certificate_arn        = var.primary_acm_certificate_arn
  enable_plain_listener      = var.enable_plain_listener
  admin_port                 = var.admin_port
  access_log_bucket          = module.backup_bucket.access_log_bucket_names.source
  access_log_prefix          = local.nlb_log_prefixes.primary
  target_instance_ids        = { for key, host in module.primary_region_host : key => host.instance_id }
}

module "dr_nlb" {
  source    = "./modules/nlb"
  providers = { aws = aws.dr }

  name                       = local.nlb_names.dr
  vpc_id                     = module.dr_network.vpc_id
  vpc_cidr_block             = module.dr_network.vpc_cidr_block
  subnet_ids                 = module.dr_network.public_subnet_ids
  allowed_client_cidrs       = var.allowed_client_cidrs
  enable_deletion_protection = var.deletion_protection
  acm_certificate_arn        = var.dr_acm_certificate_arn
  enable_plain_listener      = var.enable_plain_listener
  admin_port                 = var.admin_port
  access_log_bucket          = module.backup_bucket.access_log_bucket_names.replica
  access_log_prefix          = local.nlb_log_prefixes.dr
  target_instance_ids = {
    dr = module.dr.instance_id
  }
}

# --- hosts ---------------------------------------------------------------------------------

# The two database hosts of the primary region, one per AZ, members of one Patroni
# cluster: Patroni decides which leads (the keys stay primary and replica: what they were
# at first boot). They differ only in subnet, address and etcd member name.
locals {
  primary_region_hosts = {
    primary = { etcd_name = "a", subnet_index = 0, private_ip = local.primary_ip, peer = local.replica_ip }
    replica = { etcd_name = "b", subnet_index = 1, private_ip = local.replica_ip, peer = local.primary_ip }
  }
}

module "primary_region_host" {
  source    = "./modules/db_host"
  providers = { aws = aws.primary }
  for_each  = local.primary_region_hosts

  name                           = "${var.name}-${var.primary_region}-${each.key}"
  role                           = "patroni"
  ami_id                         = var.primary_ami_id
  ami_name_filter                = var.ami_name_filter
  instance_type                  = var.instance_type
  subnet_id                      = module.primary_network.private_subnet_ids[each.value.subnet_index]
  private_ip                     = each.value.private_ip
  vpc_cidr_block                 = module.primary_network.vpc_cidr_block
  s3_prefix_list_id              = module.primary_network.s3_prefix_list_id
  iam_instance_profile           = module.primary_host_role.instance_profile_name
  kms_key_arn                    = module.primary_hosts_key.key_arn
  termination_protection         = var.deletion_protection
  data_volume_size               = var.data_volume_size
  api_source_security_group_id   = module.primary_nlb.security_group_id
  postgres_peer_cidrs            = local.peer_cidrs[each.key]
  database_url                   = local.primary_region_database_url
  timezone                       = var.timezone
  drain_seconds                  = module.primary_nlb.drain_seconds
  admin_port                     = var.admin_port
  tls_ca_parameter               = module.credentials.ca_certificate_parameter
  tls_cert_parameter             = module.credentials.host_parameters[each.key].cert
  tls_key_parameter              = module.credentials.host_parameters[each.key].key
  s3_bucket                      = module.backup_bucket.bucket_name
  s3_prefix                      = "${local.backup_prefix}/"
  s3_region                      = var.primary_region
  s3_kms_key_id                  = module.backup_bucket.kms_key_arn
  replica_cidrs                  = local.peer_cidrs[each.key]
  replication_password_parameter = var.replication_password_parameter
  etcd_initial_cluster           = local.etcd_initial_cluster
  etcd_name                      = each.value.etcd_name
  etcd_peer_cidrs                = local.etcd_peer_cidrs[each.value.etcd_name]
  patroni_peer_cidrs             = ["${each.value.peer}/32"]
  secrets_parameter_prefix       = var.patroni_secrets_parameter_prefix
  fence_buckets                  = local.primary_fence_buckets
  fence_home_region              = var.primary_region
  fence_peer_cidr                = var.dr_vpc_cidr
  fence_group                    = local.primary_fence_group
  # The failback's takeover here isolates the DR region's tier; these hosts' role may not
  # (nor write the epoch): it runs with an operator's credentials (terraform/README.md).
  peer_region       = var.dr_region
  peer_fence_group  = local.dr_fence_group
  peer_ec2_endpoint = module.dr_network.ec2_peer_endpoint_url
  # A 204 waits for the DR standby cluster's flush (its slot, kept by Patroni).
  dr_receipt_slot = "dob_dr"
  # Back after a takeover, dob-promote --follow makes this cluster the DR region's standby.
  peer_hosts = local.dr_ip

  # The passwords and the certificate are in SSM before the host first boots.
  depends_on = [module.credentials]
}

# The third etcd member, in the third AZ: no PostgreSQL, no API. With it, losing any one
# AZ leaves two of three members, so the surviving database host can take the leader key.
module "witness" {
  source    = "./modules/db_host"
  providers = { aws = aws.primary }

  name                           = "${var.name}-${var.primary_region}-witness"
  role                           = "witness"
  ami_id                         = var.primary_ami_id
  ami_name_filter                = var.ami_name_filter
  instance_type                  = var.witness_instance_type
  subnet_id                      = module.primary_network.private_subnet_ids[2]
  private_ip                     = local.witness_ip
  vpc_cidr_block                 = module.primary_network.vpc_cidr_block
  s3_prefix_list_id              = module.primary_network.s3_prefix_list_id
  iam_instance_profile           = module.primary_host_role.instance_profile_name
  kms_key_arn                    = module.primary_hosts_key.key_arn
  termination_protection         = var.deletion_protection
  data_volume_size               = 10
  api_source_security_group_id   = module.primary_nlb.security_group_id
  postgres_peer_cidrs            = []
  database_url                   = local.primary_region_database_url
  timezone                       = var.timezone
  s3_bucket                      = module.backup_bucket.bucket_name
  s3_prefix                      = "${local.backup_prefix}/"
  s3_region                      = var.primary_region
  s3_kms_key_id                  = module.backup_bucket.kms_key_arn
  replica_cidrs                  = []
  replication_password_parameter = var.replication_password_parameter
  etcd_initial_cluster           = local.etcd_initial_cluster
  etcd_name                      = "witness"
  etcd_peer_cidrs                = local.etcd_peer_cidrs["witness"]
  admin_port                     = var.admin_port
  tls_ca_parameter               = module.credentials.ca_certificate_parameter
  tls_cert_parameter             = module.credentials.host_parameters["witness"].cert
  tls_key_parameter              = module.credentials.host_parameters["witness"].key

  depends_on = [module.credentials]
}

module "dr" {
  source    = "./modules/db_host"
  providers = { aws = aws.dr }

  name                           = "${var.name}-${var.dr_region}-dr"
  role                           = "dr-standby"
  ami_id                         = var.dr_ami_id
  ami_name_filter                = var.ami_name_filter
  instance_type                  = var.instance_type
  subnet_id                      = module.dr_network.private_subnet_ids[0]
  private_ip                     = local.dr_ip
  vpc_cidr_block                 = module.dr_network.vpc_cidr_block
  s3_prefix_list_id              = module.dr_network.s3_prefix_list_id
  iam_instance_profile           = module.dr_host_role.instance_profile_name
  kms_key_arn                    = module.dr_hosts_key.key_arn
  termination_protection         = var.deletion_protection
  data_volume_size               = var.data_volume_size
  api_source_security_group_id   = module.dr_nlb.security_group_id
  postgres_peer_cidrs            = local.peer_cidrs["dr"]
  database_url                   = local.dr_database_url
  timezone                       = var.timezone
  drain_seconds                  = module.dr_nlb.drain_seconds
  admin_port                     = var.admin_port
  tls_ca_parameter               = module.credentials.ca_certificate_parameter
  tls_cert_parameter             = module.credentials.host_parameters["dr"].cert
  tls_key_parameter              = module.credentials.host_parameters["dr"].key
  s3_bucket                      = module.backup_bucket.replica_bucket_name
  s3_prefix                      = "${local.backup_prefix}/"
  s3_region                      = var.dr_region
  s3_kms_key_id                  = module.backup_bucket.replica_kms_key_arn
  replica_cidrs                  = local.peer_cidrs["dr"]
  replication_password_parameter = var.replication_password_parameter
  # A Patroni standby cluster with its own one-member etcd, following whichever primary
  # region host leads; dob-promote --takeover promotes it.
  etcd_initial_cluster = "dr=http://${local.dr_ip}:2380"
  etcd_name            = "dr"
  standby_of           = "${local.primary_ip},${local.replica_ip}"
  # After a failback, dob-promote --follow makes this cluster a standby of them again.
  peer_hosts               = "${local.primary_ip},${local.replica_ip}"
  secrets_parameter_prefix = var.patroni_secrets_parameter_prefix
  fence_buckets            = local.dr_fence_buckets
  fence_home_region        = var.primary_region
  fence_peer_cidr          = var.primary_vpc_cidr
  fence_group              = local.dr_fence_group
  peer_region              = var.primary_region
  peer_fence_group         = local.primary_fence_group
  peer_ec2_endpoint        = module.primary_network.ec2_peer_endpoint_url

  # Replication to this host crosses the peering connection; its credentials are in SSM
  # before it first boots.
  depends_on = [module.peering, module.credentials]
}

# --- DNS failover --------------------------------------------------------------------------
#
# A failover record is healthy only when both hold: its health check (a TCP connection to
# the load balancer's public listener from Route53's checkers: the region and its load
# balancer are reachable from the internet) and, through evaluate_target_health, the load
# balancer's own view of its targets (at least one passes /readyz on the admin port, which
# is not public and so cannot be checked from outside). An HTTPS check of the public port
# could only fetch /hello, which says nothing about the database.

resource "aws_route53_health_check" "primary" {
  provider = aws.primary
  count    = var.route53_zone_id == null ? 0 : 1

  type              = "TCP"
  fqdn              = module.primary_nlb.dns_name
  port              = module.primary_nlb.public_port
  request_interval  = 10
  failure_threshold = 3
  measure_latency   = true

  tags = merge(local.tags, { Name = "${var.name}-${var.primary_region}-listener" })
}

resource "aws_route53_health_check" "secondary" {
  provider = aws.primary
  count    = var.route53_zone_id == null ? 0 : 1

  type              = "TCP"
  fqdn              = module.dr_nlb.dns_name
  port              = module.dr_nlb.public_port
  request_interval  = 10
  failure_threshold = 3
  measure_latency   = true

  tags = merge(local.tags, { Name = "${var.name}-${var.dr_region}-listener" })
}

resource "aws_route53_record" "primary" {
  provider = aws.primary
  count    = var.route53_zone_id == null ? 0 : 1

  zone_id         = var.route53_zone_id
  name            = var.api_domain_name
  type            = "A"
  set_identifier  = "${var.name}-${var.primary_region}"
  health_check_id = aws_route53_health_check.primary[0].id

  failover_routing_policy {
    type = "PRIMARY"
  }

  lifecycle {
    precondition {
      condition     = var.api_domain_name != null
      error_message = "route53_zone_id is set: set api_domain_name too (the name the failover records answer for)."
    }
  }

  alias {
    name                   = module.primary_nlb.dns_name
    zone_id                = module.primary_nlb.zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "secondary" {
  provider = aws.primary
  count    = var.route53_zone_id == null ? 0 : 1

  zone_id         = var.route53_zone_id
  name            = var.api_domain_name
  type            = "A"
  set_identifier  = "${var.name}-${var.dr_region}"
  health_check_id = aws_route53_health_check.secondary[0].id

  failover_routing_policy {
    type = "SECONDARY"
  }

  alias {
    name                   = module.dr_nlb.dns_name
    zone_id                = module.dr_nlb.zone_id
    evaluate_target_health = true
  }
}

# --- operations: the only commands CI may send to the hosts --------------------------------

module "primary_ssm_documents" {
  source    = "./modules/ssm_documents"
  providers = { aws = aws.primary }

  name                = var.name
  release_bucket_name = module.primary_release_bucket.bucket_name
  admin_port          = var.admin_port
}

module "dr_ssm_documents" {
  source    = "./modules/ssm_documents"
  providers = { aws = aws.dr }

  name                = var.name
  release_bucket_name = module.dr_release_bucket.bucket_name
  admin_port          = var.admin_port
}

# --- CI/CD (optional) ----------------------------------------------------------------------

module "github_ci" {
  source    = "./modules/github_ci"
  providers = { aws = aws.primary }
  count     = var.github_repository == null ? 0 : 1

  name                     = var.name
  github_repository        = var.github_repository
  github_environment       = var.github_environment
  create_oidc_provider     = var.create_github_oidc_provider
  project_tag              = var.name
  regions                  = [var.primary_region, var.dr_region]
  permissions_boundary_arn = module.permissions_boundary.arn
  bucket_names = concat(
    [module.backup_bucket.bucket_name, module.backup_bucket.replica_bucket_name],
    values(module.backup_bucket.access_log_bucket_names),
    values(local.release_bucket_names),
  )
  backup_bucket_arns     = [module.backup_bucket.bucket_arn, module.backup_bucket.replica_bucket_arn]
  release_bucket_arns    = [module.primary_release_bucket.bucket_arn, module.dr_release_bucket.bucket_arn]
  release_kms_key_arns   = [module.primary_release_bucket.kms_key_arn, module.dr_release_bucket.kms_key_arn]
  ssm_parameter_prefixes = [var.patroni_secrets_parameter_prefix, var.tls_parameter_prefix, var.replication_password_parameter]
  ssm_document_arns      = concat(module.primary_ssm_documents.document_arns, module.dr_ssm_documents.document_arns)
  drill_environment      = var.github_drill_environment
  drill_document_arns    = [module.primary_ssm_documents.restore_drill_document_arn, module.dr_ssm_documents.restore_drill_document_arn]
  terraform_state_bucket = var.terraform_state_bucket
  route53_zone_id        = var.route53_zone_id
}
