# dob in two regions.
#
#   eu-west-1 (primary)   VPC, private subnets in two AZs, hosts `primary` (AZ a) and
#                         `replica` (AZ b) behind an NLB, the backup bucket.
#   eu-central-1 (DR)     VPC, host `dr` (a cascading streaming replica) behind its own NLB,
#                         the replica bucket (S3 cross-region replication).
#   between them          VPC peering for streaming replication; Route53 failover records
#                         (PRIMARY: the eu-west-1 NLB, SECONDARY: the eu-central-1 NLB),
#                         both health-checked on /readyz.
#
# Every host boots the same AMI (packer/); user data only mounts the data volume, writes
# /etc/dob/dob.env and starts the units of the host's role.

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

  # In the primary region the API and the backups follow whichever host is writable.
  primary_region_database_url = "postgresql://${var.database_user}@${local.primary_ip}:5432,${local.replica_ip}:5432/${var.database_name}?target_session_attrs=read-write"
  # In the DR region the local replica: read-only until promoted, then the primary.
  dr_database_url = "postgresql://${var.database_user}@127.0.0.1:5432/${var.database_name}"

  backup_prefix = trimsuffix(var.backup_prefix, "/")

  replica_bucket_name = coalesce(var.replica_bucket_name, "${var.backup_bucket_name}-${var.dr_region}")

  # Release binaries for the rolling restart, one bucket per region (hosts download through
  # their own region's S3 gateway endpoint).
  release_bucket_names = {
    primary = "${var.name}-releases-${data.aws_caller_identity.current.account_id}-${var.primary_region}"
    dr      = "${var.name}-releases-${data.aws_caller_identity.current.account_id}-${var.dr_region}"
  }

  replication_password_parameter_arn = {
    for region in [var.primary_region, var.dr_region] : region =>
    "arn:${data.aws_partition.current.partition}:ssm:${region}:${data.aws_caller_identity.current.account_id}:parameter/${trimprefix(var.replication_password_parameter, "/")}"
  }
  # The cross-region fence (src/fence.rs, docs/failover.md): the record in both backup
  # buckets; each region reads the other's through that region's S3 interface endpoint,
  # across the peering.
  fence_key = "${local.backup_prefix}/fence/epoch.json"
  fence_object_arns = [
    "${module.backup_bucket.bucket_arn}/${local.fence_key}",
    "${module.backup_bucket.replica_bucket_arn}/${local.fence_key}",
  ]
  fence_kms_key_arns = [module.backup_bucket.kms_key_arn, module.backup_bucket.replica_kms_key_arn]
  primary_fence_buckets = join(",", [
    "${module.backup_bucket.bucket_name}@${var.primary_region}",
    "${module.backup_bucket.replica_bucket_name}@${var.dr_region}=${module.dr_network.s3_peer_endpoint_url}",
  ])
  dr_fence_buckets = join(",", [
    "${module.backup_bucket.bucket_name}@${var.primary_region}=${module.primary_network.s3_peer_endpoint_url}",
    "${module.backup_bucket.replica_bucket_name}@${var.dr_region}",
  ])

  secrets_parameter_arn_prefix = {
    for region in [var.primary_region, var.dr_region] : region =>
    "arn:${data.aws_partition.current.partition}:ssm:${region}:${data.aws_caller_identity.current.account_id}:parameter/${trimprefix(var.patroni_secrets_parameter_prefix, "/")}"
  }
}

# --- keys: EBS volumes and the replication password; flow logs ----------------------------

module "primary_hosts_key" {
  source    = "./modules/kms_key"
  providers = { aws = aws.primary }

  alias       = "${var.name}-hosts"
  description = "dob hosts in ${var.primary_region}: EBS volumes and the replication password parameter"
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
  description = "dob hosts in ${var.dr_region}: EBS volumes and the replication password parameter"
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

  name                 = "${var.name}-${var.primary_region}"
  cidr_block           = var.primary_vpc_cidr
  azs                  = var.primary_azs
  private_subnet_cidrs = local.primary_private_cidrs
  public_subnet_cidrs  = local.primary_public_cidrs
  flow_log_kms_key_arn = module.primary_logs_key.key_arn
  s3_peer_cidr_blocks  = [var.dr_vpc_cidr]
}

module "dr_network" {
  source    = "./modules/network"
  providers = { aws = aws.dr }

  name                 = "${var.name}-${var.dr_region}"
  cidr_block           = var.dr_vpc_cidr
  azs                  = var.dr_azs
  private_subnet_cidrs = local.dr_private_cidrs
  public_subnet_cidrs  = local.dr_public_cidrs
  flow_log_kms_key_arn = module.dr_logs_key.key_arn
  s3_peer_cidr_blocks  = [var.primary_vpc_cidr]
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

module "backup_bucket" {
  source = "./modules/backup_bucket"
  providers = {
    aws.source  = aws.primary
    aws.replica = aws.dr
  }

  name                               = var.name
  bucket_name                        = var.backup_bucket_name
  replica_bucket_name                = local.replica_bucket_name
  noncurrent_version_expiration_days = var.backup_noncurrent_version_expiration_days
  source_region_log_sources          = [local.release_bucket_names.primary]
  replica_region_log_sources         = [local.release_bucket_names.dr]
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

# --- host roles ----------------------------------------------------------------------------

module "primary_host_role" {
  source    = "./modules/host_role"
  providers = { aws = aws.primary }

  name                               = "${var.name}-${var.primary_region}-hosts"
  region                             = var.primary_region
  backup_bucket_arn                  = module.backup_bucket.bucket_arn
  backup_prefix                      = var.backup_prefix
  backup_kms_key_arn                 = module.backup_bucket.kms_key_arn
  backup_write                       = true
  replication_password_parameter_arn = local.replication_password_parameter_arn[var.primary_region]
  secrets_parameter_arn_prefix       = local.secrets_parameter_arn_prefix[var.primary_region]
  replication_password_kms_key_arn   = module.primary_hosts_key.key_arn
  fence_object_arns                  = local.fence_object_arns
  fence_kms_key_arns                 = local.fence_kms_key_arns
}

module "dr_host_role" {
  source    = "./modules/host_role"
  providers = { aws = aws.primary } # IAM is global; the role serves the DR host.

  name                               = "${var.name}-${var.dr_region}-hosts"
  region                             = var.dr_region
  backup_bucket_arn                  = module.backup_bucket.replica_bucket_arn
  backup_prefix                      = var.backup_prefix
  backup_kms_key_arn                 = module.backup_bucket.replica_kms_key_arn
  backup_write                       = var.dr_backup_write
  replication_password_parameter_arn = local.replication_password_parameter_arn[var.dr_region]
  secrets_parameter_arn_prefix       = local.secrets_parameter_arn_prefix[var.dr_region]
  replication_password_kms_key_arn   = module.dr_hosts_key.key_arn
  fence_object_arns                  = local.fence_object_arns
  fence_write                        = true
  fence_kms_key_arns                 = local.fence_kms_key_arns
}

# --- load balancers ------------------------------------------------------------------------

module "primary_nlb" {
  source    = "./modules/nlb"
  providers = { aws = aws.primary }

  name                       = "${var.name}-${var.primary_region}"
  vpc_id                     = module.primary_network.vpc_id
  vpc_cidr_block             = module.primary_network.vpc_cidr_block
  subnet_ids                 = module.primary_network.public_subnet_ids
  allowed_client_cidrs       = var.allowed_client_cidrs
  enable_deletion_protection = var.deletion_protection
  target_instance_ids        = { for key, host in module.primary_region_host : key => host.instance_id }
}

module "dr_nlb" {
  source    = "./modules/nlb"
  providers = { aws = aws.dr }

  name                       = "${var.name}-${var.dr_region}"
  vpc_id                     = module.dr_network.vpc_id
  vpc_cidr_block             = module.dr_network.vpc_cidr_block
  subnet_ids                 = module.dr_network.public_subnet_ids
  allowed_client_cidrs       = var.allowed_client_cidrs
  enable_deletion_protection = var.deletion_protection
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
  s3_bucket                      = module.backup_bucket.bucket_name
  s3_prefix                      = "${local.backup_prefix}/"
  s3_region                      = var.primary_region
  s3_kms_key_id                  = module.backup_bucket.kms_key_arn
  backup_keep                    = var.backup_keep
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
  s3_bucket                      = module.backup_bucket.replica_bucket_name
  s3_prefix                      = "${local.backup_prefix}/"
  s3_region                      = var.dr_region
  s3_kms_key_id                  = module.backup_bucket.replica_kms_key_arn
  backup_keep                    = var.backup_keep
  replica_cidrs                  = local.peer_cidrs["dr"]
  replication_password_parameter = var.replication_password_parameter
  # A Patroni standby cluster with its own one-member etcd, following whichever primary
  # region host leads; dob-promote --takeover promotes it.
  etcd_initial_cluster     = "dr=http://${local.dr_ip}:2380"
  etcd_name                = "dr"
  standby_of               = "${local.primary_ip},${local.replica_ip}"
  secrets_parameter_prefix = var.patroni_secrets_parameter_prefix
  fence_buckets            = local.dr_fence_buckets
  fence_home_region        = var.primary_region
  fence_peer_cidr          = var.primary_vpc_cidr

  # Replication to this host crosses the peering connection.
  depends_on = [module.peering]
}

# --- DNS failover --------------------------------------------------------------------------

resource "aws_route53_health_check" "primary" {
  provider = aws.primary
  count    = var.route53_zone_id == null ? 0 : 1

  type              = "HTTP"
  fqdn              = module.primary_nlb.dns_name
  port              = 8080
  resource_path     = "/readyz"
  request_interval  = 10
  failure_threshold = 3
  measure_latency   = true

  tags = merge(local.tags, { Name = "${var.name}-${var.primary_region}-readyz" })
}

resource "aws_route53_health_check" "secondary" {
  provider = aws.primary
  count    = var.route53_zone_id == null ? 0 : 1

  type              = "HTTP"
  fqdn              = module.dr_nlb.dns_name
  port              = 8080
  resource_path     = "/readyz"
  request_interval  = 10
  failure_threshold = 3
  measure_latency   = true

  tags = merge(local.tags, { Name = "${var.name}-${var.dr_region}-readyz" })
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

# --- CI/CD (optional) ----------------------------------------------------------------------

module "github_ci" {
  source    = "./modules/github_ci"
  providers = { aws = aws.primary }
  count     = var.github_repository == null ? 0 : 1

  name                 = var.name
  github_repository    = var.github_repository
  github_environment   = var.github_environment
  create_oidc_provider = var.create_github_oidc_provider
  project_tag          = var.name
}
