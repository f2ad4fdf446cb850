# An internet-facing network load balancer for dob-api: a TLS listener on 443 (the load
# balancer terminates TLS with an ACM certificate and forwards plain TCP inside the VPC,
# so the instance terminates nothing), a plain TCP listener only when asked for, one
# target group health-checked over HTTP on the hosts' admin port (/readyz, which the
# public port does not serve), cross-zone load balancing, access logs, and a security
# group the hosts can reference.

locals {
  tls      = var.acm_certificate_arn != null
  listener = local.tls ? var.port : var.plain_port
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-nlb-"
  description = "dob NLB ${var.name}: clients to the listener, the listener to the hosts"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-nlb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = local.tls ? toset(var.allowed_client_cidrs) : toset([])

  security_group_id = aws_security_group.this.id
  description       = "dob API clients over TLS (and Route53 health checkers) from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.port
  to_port           = var.port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "plain_clients" {
  for_each = var.enable_plain_listener ? toset(var.allowed_client_cidrs) : toset([])

  security_group_id = aws_security_group.this.id
  description       = "dob API clients over plain TCP (enable_plain_listener) from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.plain_port
  to_port           = var.plain_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "targets" {
  security_group_id = aws_security_group.this.id
  description       = "To the dob hosts' API port (client traffic)"
  ip_protocol       = "tcp"
  from_port         = var.target_port
  to_port           = var.target_port
  cidr_ipv4         = var.vpc_cidr_block
}

resource "aws_vpc_security_group_egress_rule" "health_checks" {
  security_group_id = aws_security_group.this.id
  description       = "To the dob hosts' admin port (/readyz health checks)"
  ip_protocol       = "tcp"
  from_port         = var.admin_port
  to_port           = var.admin_port
  cidr_ipv4         = var.vpc_cidr_block
}

resource "aws_lb" "this" {
  name                             = var.name
  load_balancer_type               = "network"
  internal                         = var.internal
  subnets                          = var.subnet_ids
  security_groups                  = [aws_security_group.this.id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.enable_deletion_protection

  # Only TLS listeners produce NLB access logs: one line per TLS connection (client
  # address, TLS version and cipher, bytes, handshake time).
  access_logs {
    enabled = true
    bucket  = var.access_log_bucket
    prefix  = var.access_log_prefix
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = local.tls || var.enable_plain_listener
      error_message = "acm_certificate_arn is required (the public listener is TLS on 443); set enable_plain_listener = true only to serve plain TCP without one."
    }
  }
}

resource "aws_lb_target_group" "this" {
  name                 = var.name
  port                 = var.target_port
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay
  preserve_client_ip   = true

  # dob-api serves /readyz on its admin port only (DOB_ADMIN_LISTEN); the security groups
  # admit that port from inside the VPC, where the load balancer's nodes are.
  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = tostring(var.admin_port)
    path                = var.health_check_path
    matcher             = "200"
    interval            = var.health_check_interval
    timeout             = 5
    healthy_threshold   = var.health_check_threshold
    unhealthy_threshold = var.health_check_threshold
  }

  tags = var.tags
}

# The public listener: TLS 1.2/1.3 only, terminated here; the hosts see plain TCP.
resource "aws_lb_listener" "tls" {
  count = local.tls ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = var.port
  protocol          = "TLS"
  certificate_arn   = var.acm_certificate_arn
  ssl_policy        = var.ssl_policy

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }

  tags = var.tags
}

# Plain TCP only when asked for (a test stack without a certificate, or a migration
# window for clients of the old port): never by default.
resource "aws_lb_listener" "plain" {
  count = var.enable_plain_listener ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = var.plain_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }

  tags = var.tags
}

resource "aws_lb_target_group_attachment" "this" {
  for_each = var.target_instance_ids

  target_group_arn = aws_lb_target_group.this.arn
  target_id        = each.value
  port             = var.target_port
}
