# One dob database host: an EC2 instance from the dob AMI (PostgreSQL 15, the dob
# binaries and units), with an encrypted root volume, a separate encrypted data volume for
# PostgreSQL, no public address, IMDSv2 only, and its own security group. User data only
# mounts the data volume, writes /etc/dob/dob.env and starts the units of the host's role.

data "aws_region" "current" {}

data "aws_subnet" "this" {
  id = var.subnet_id
}

data "aws_ami" "dob" {
  count = var.ami_id == null ? 1 : 0

  most_recent = true
  owners      = var.ami_owners

  filter {
    name   = "name"
    values = [var.ami_name_filter]
  }

  filter {
    name   = "state"
    values = ["available"]
  }
}

locals {
  ami_id = var.ami_id != null ? var.ami_id : data.aws_ami.dob[0].id

  # Every host: role setup (replica bootstrap, replication password), PostgreSQL and the
  # API socket. Primary-region hosts get the backup timers (the units skip themselves on
  # a replica); the DR host gets the nightly restore drill. Every database host publishes
  # the alarms' figures every minute (dob-metrics.timer: terraform/alarms.tf).
  # Patroni runs PostgreSQL on these roles; the Debian cluster unit on the others.
  patroni_role  = contains(["patroni", "dr-standby"], var.role)
  postgres_unit = local.patroni_role ? "patroni.service" : "postgresql@15-main.service"
  units = var.role == "witness" ? ["dob-role-setup.service", "etcd.service"] : concat(
    ["dob-role-setup.service"],
    local.patroni_role ? ["etcd.service", "patroni.service"] : ["postgresql@15-main.service"],
    ["dob-api.socket"],
    contains(["dr-replica", "dr-standby"], var.role) ? ["dob-restore-drill.timer"] : ["dob-backup.timer"],
    # eu-west-1's Patroni members: pgBackRest's weekly full and daily differential
    # backups and the nightly point-in-time recovery drill (each runs on the leader only).
    # The DR host: the same backups into its own repository, which run only once a
    # takeover made it the primary (the units skip a standby cluster's leader).
    var.role == "patroni" ? ["dob-pgbackrest-full.timer", "dob-pgbackrest-diff.timer", "dob-pitr-drill.timer"] : [],
    var.role == "dr-standby" ? ["dob-pgbackrest-full.timer", "dob-pgbackrest-diff.timer"] : [],
    ["dob-metrics.timer"],
  )

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    role                           = var.role
    region                         = data.aws_region.current.name
    volume_id                      = aws_ebs_volume.data.id
    volume_id_compact              = replace(aws_ebs_volume.data.id, "-", "")
    xen_device_name                = replace(var.data_device_name, "/dev/sd", "/dev/xvd")
    database_url                   = var.database_url
    listen                         = var.listen
    admin_port                     = var.admin_port
    timezone                       = var.timezone
    drain_seconds                  = var.drain_seconds
    s3_bucket                      = var.s3_bucket
    s3_prefix                      = var.s3_prefix
    s3_region                      = var.s3_region
    s3_kms_key_id                  = var.s3_kms_key_id
    primary_host                   = var.primary_host == null ? "" : var.primary_host
    replica_cidrs                  = join(",", var.replica_cidrs)
    replication_password_file      = var.replication_password_file
    replication_password_parameter = var.replication_password_parameter
    units                          = local.units
    data_units                     = [local.postgres_unit, "dob-role-setup.service"]
    host_address                   = var.etcd_initial_cluster == "" ? "" : var.private_ip
    etcd_initial_cluster           = var.etcd_initial_cluster
    etcd_name                      = var.etcd_name
    standby_of                     = var.standby_of
    secrets_parameter_prefix       = var.secrets_parameter_prefix
    patroni_url                    = local.patroni_role ? "http://${var.private_ip}:8008" : ""
    fence_buckets                  = var.fence_buckets
    fence_home_region              = var.fence_home_region
    dr_receipt_slot                = var.dr_receipt_slot
    peer_hosts                     = var.peer_hosts
    peer_region                    = var.peer_region
    peer_fence_group               = var.peer_fence_group
    peer_ec2_endpoint              = var.peer_ec2_endpoint
    tls_ca_parameter               = var.tls_ca_parameter
    tls_cert_parameter             = var.tls_cert_parameter
    tls_key_parameter              = var.tls_key_parameter
  })
}

# --- security group -------------------------------------------------------------------

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-"
  description = "dob host ${var.name}: API from the load balancer, PostgreSQL from its peers only"
  vpc_id      = data.aws_subnet.this.vpc_id

  tags = merge(var.tags, { Name = var.name })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "api" {
  # The witness serves no API: it runs etcd only.
  count = var.role == "witness" ? 0 : 1

  security_group_id            = aws_security_group.this.id
  description                  = "dob-api's public port (/hello) from the network load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.api_port
  to_port                      = var.api_port
  referenced_security_group_id = var.api_source_security_group_id
}

# The admin port (/readyz, /healthz, /metrics) from inside the VPC only: the load
# balancer's health checks come from its nodes' private addresses there. Never the world.
resource "aws_vpc_security_group_ingress_rule" "admin" {
  count = var.role == "witness" ? 0 : 1

  security_group_id = aws_security_group.this.id
  description       = "dob-api's admin port (/readyz health checks) from inside the VPC"
  ip_protocol       = "tcp"
  from_port         = var.admin_port
  to_port           = var.admin_port
  cidr_ipv4         = var.vpc_cidr_block
}

resource "aws_vpc_security_group_ingress_rule" "postgres" {
  for_each = toset(var.postgres_peer_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "PostgreSQL (API and streaming replication) from peer ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "postgres" {
  for_each = toset(var.postgres_peer_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "PostgreSQL (API and streaming replication) to peer ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "etcd" {
  for_each = toset(var.etcd_peer_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "etcd client and peer traffic from member ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 2379
  to_port           = 2380
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "etcd" {
  for_each = toset(var.etcd_peer_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "etcd client and peer traffic to member ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 2379
  to_port           = 2380
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "patroni" {
  for_each = toset(var.patroni_peer_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "Patroni REST API from member ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 8008
  to_port           = 8008
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "patroni" {
  for_each = toset(var.patroni_peer_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "Patroni REST API to member ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 8008
  to_port           = 8008
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "fence" {
  count = var.fence_peer_cidr == "" ? 0 : 1

  security_group_id = aws_security_group.this.id
  description       = "HTTPS to the other region's S3 interface endpoint (the cross-region fence record)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.fence_peer_cidr
}

resource "aws_vpc_security_group_egress_rule" "s3" {
  security_group_id = aws_security_group.this.id
  description       = "HTTPS to S3 through the gateway endpoint (backups)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = var.s3_prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "endpoints" {
  security_group_id = aws_security_group.this.id
  description       = "HTTPS to the interface endpoints in the VPC (SSM, Session Manager)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.vpc_cidr_block
}

# --- volumes and instance ----------------------------------------------------------------

resource "aws_ebs_volume" "data" {
  availability_zone = data.aws_subnet.this.availability_zone
  type              = "gp3"
  size              = var.data_volume_size
  iops              = var.data_volume_iops
  throughput        = var.data_volume_throughput
  encrypted         = true
  kms_key_id        = var.kms_key_arn
  final_snapshot    = true

  tags = merge(var.tags, { Name = "${var.name}-pgdata" })
}

resource "aws_instance" "this" {
  ami                         = local.ami_id
  instance_type               = var.instance_type
  subnet_id                   = var.subnet_id
  private_ip                  = var.private_ip
  associate_public_ip_address = false
  vpc_security_group_ids      = [aws_security_group.this.id]
  iam_instance_profile        = var.iam_instance_profile
  ebs_optimized               = true
  monitoring                  = true
  disable_api_termination     = var.termination_protection
  user_data                   = local.user_data

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    kms_key_id            = var.kms_key_arn
    delete_on_termination = true
  }

  # dob:fence-group: a takeover in the other region stops this host (src/failover/isolation.rs).
  tags = merge(
    var.tags,
    { Name = var.name, DobRole = var.role },
    var.fence_group == "" ? {} : { "dob:fence-group" = var.fence_group },
  )

  lifecycle {
    # A new AMI or env file must not silently replace a database host: roll hosts one at a
    # time with `terraform apply -replace=...` (see README.md).
    ignore_changes = [ami, user_data]
  }
}

resource "aws_volume_attachment" "data" {
  device_name                    = var.data_device_name
  volume_id                      = aws_ebs_volume.data.id
  instance_id                    = aws_instance.this.id
  stop_instance_before_detaching = true
}
