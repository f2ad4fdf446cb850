# A VPC with private subnets for the database hosts and public subnets that only the
# network load balancer uses. The private subnets have no route to the internet at all:
# S3 is reached through a gateway endpoint, SSM (Session Manager, Parameter Store)
# through interface endpoints. Every flow is logged to an encrypted log group.

data "aws_region" "current" {}

locals {
  az_count = length(var.azs)
}

resource "aws_vpc" "this" {
  cidr_block           = var.cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(var.tags, { Name = var.name })
}

# The default security group of a VPC allows all traffic between its members: take every
# rule away so that nothing ends up relying on it.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name}-default-deny" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = merge(var.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  count = local.az_count

  vpc_id            = aws_vpc.this.id
  availability_zone = var.azs[count.index]
  cidr_block        = var.public_subnet_cidrs[count.index]
  # Only the NLB lives here, and it brings its own addresses.
  map_public_ip_on_launch = false

  tags = merge(var.tags, { Name = "${var.name}-public-${var.azs[count.index]}", Tier = "public" })
}

resource "aws_subnet" "private" {
  count = local.az_count

  vpc_id                  = aws_vpc.this.id
  availability_zone       = var.azs[count.index]
  cidr_block              = var.private_subnet_cidrs[count.index]
  map_public_ip_on_launch = false

  # dob:fence-group: what a takeover in the other region isolates (src/failover/isolation.rs).
  tags = merge(
    var.tags,
    { Name = "${var.name}-private-${var.azs[count.index]}", Tier = "private" },
    var.fence_group == "" ? {} : { "dob:fence-group" = var.fence_group },
  )
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  count = local.az_count

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# One private route table: local traffic, the S3 gateway endpoint, and whatever routes the
# caller adds (VPC peering). No default route.
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name}-private" })
}

resource "aws_route_table_association" "private" {
  count = local.az_count

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]

  tags = merge(var.tags, { Name = "${var.name}-s3" })
}

resource "aws_security_group" "endpoints" {
  name_prefix = "${var.name}-endpoints-"
  description = "HTTPS from inside the VPC to the interface endpoints (SSM, Session Manager)"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name}-endpoints" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  security_group_id = aws_security_group.endpoints.id
  description       = "HTTPS from the VPC"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = aws_vpc.this.cidr_block
}

# S3 for the peered region: its hosts cannot use this region's gateway endpoint (gateway
# endpoints serve their own VPC only), so an interface endpoint, reached across the
# peering, carries their requests for the cross-region fence record (src/failover/fence.rs).
resource "aws_security_group" "s3_peer" {
  count = length(var.s3_peer_cidr_blocks) > 0 ? 1 : 0

  name_prefix = "${var.name}-s3-peer-"
  description = "HTTPS from the peered region's VPC to this region's interface endpoints for it (S3, EC2)"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name}-s3-peer" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "s3_peer_https" {
  for_each = toset(var.s3_peer_cidr_blocks)

  security_group_id = aws_security_group.s3_peer[0].id
  description       = "HTTPS to S3 from the peered VPC ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_endpoint" "s3_peer" {
  count = length(var.s3_peer_cidr_blocks) > 0 ? 1 : 0

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.s3_peer[0].id]
  private_dns_enabled = false

  tags = merge(var.tags, { Name = "${var.name}-s3-peer" })
}

# EC2 for the peered region, the same way: a takeover there isolates this region's
# database tier through it (dob-promote --takeover, --lift-isolation), so it answers for
# as long as this VPC does, and is unreachable when this region is gone.
resource "aws_vpc_endpoint" "ec2_peer" {
  count = length(var.s3_peer_cidr_blocks) > 0 && var.fence_group != "" ? 1 : 0

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${data.aws_region.current.name}.ec2"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.s3_peer[0].id]
  private_dns_enabled = false

  tags = merge(var.tags, { Name = "${var.name}-ec2-peer" })
}

# The network ACL a takeover in the other region moves the private subnets to: nothing in
# or out, except HTTPS from the peered VPC to the interface endpoints that live in these
# subnets (S3 for the fence records, EC2 for lifting the isolation) and its replies. A host
# here can start no connection that works: a reply to it would need an inbound rule. Not
# associated with any subnet until then (a network ACL is stateless, so the move also cuts
# connections already open, which a security-group change leaves up).
resource "aws_network_acl" "isolation" {
  #checkov:skip=CKV2_AWS_1:Associated with the private subnets only by a takeover in the other region (src/failover/isolation.rs); until then it is meant to be unattached.
  count = var.fence_group == "" ? 0 : 1

  vpc_id = aws_vpc.this.id

  dynamic "ingress" {
    for_each = var.s3_peer_cidr_blocks
    content {
      rule_no    = 100 + ingress.key
      action     = "allow"
      protocol   = "tcp"
      cidr_block = ingress.value
      from_port  = 443
      to_port    = 443
    }
  }

  dynamic "egress" {
    for_each = var.s3_peer_cidr_blocks
    content {
      rule_no    = 100 + egress.key
      action     = "allow"
      protocol   = "tcp"
      cidr_block = egress.value
      from_port  = 1024
      to_port    = 65535
    }
  }

  tags = merge(var.tags, { Name = "${var.name}-isolation", "dob:fence-acl" = var.fence_group })
}

# S3 of the fence's witness region, for the third copy of the fence records: a
# cross-region interface endpoint (AWS PrivateLink carries it; no route to the internet),
# from this VPC's hosts only (security group `endpoints`).
resource "aws_vpc_endpoint" "s3_witness" {
  count = var.witness_region == "" ? 0 : 1

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${var.witness_region}.s3"
  service_region      = var.witness_region
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = false

  tags = merge(var.tags, { Name = "${var.name}-s3-witness" })
}

resource "aws_vpc_endpoint" "interface" {
  for_each = toset(var.interface_endpoints)

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${data.aws_region.current.name}.${each.value}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true

  tags = merge(var.tags, { Name = "${var.name}-${each.value}" })
}

# --- flow logs --------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/vpc/${var.name}/flow-logs"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = var.flow_log_kms_key_arn

  tags = var.tags
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    # Only for this account's flow logs (confused deputy).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

data "aws_iam_policy_document" "flow_logs_write" {
  statement {
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role" "flow_logs" {
  name_prefix        = "${var.name}-flow-logs-"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
  # The deploy role creates roles only with the project's boundary.
  permissions_boundary = var.permissions_boundary_arn

  tags = var.tags
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs_write.json
}

resource "aws_flow_log" "this" {
  vpc_id          = aws_vpc.this.id
  traffic_type    = "ALL"
  log_destination = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn    = aws_iam_role.flow_logs.arn

  tags = merge(var.tags, { Name = var.name })
}
