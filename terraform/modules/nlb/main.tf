# An internet-facing network load balancer for dob-api: a TCP listener, one target group
# health-checked over HTTP on /readyz (so a draining or database-less host leaves the
# rotation), cross-zone load balancing, and a security group the hosts can reference.

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
  for_each = toset(var.allowed_client_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "dob API clients (and Route53 health checkers) from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.port
  to_port           = var.port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "targets" {
  security_group_id = aws_security_group.this.id
  description       = "To the dob hosts' API port (traffic and health checks)"
  ip_protocol       = "tcp"
  from_port         = var.target_port
  to_port           = var.target_port
  cidr_ipv4         = var.vpc_cidr_block
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:NLB access logs only record TLS listeners; this listener is TCP, and the VPC flow logs record every connection.
  name                             = var.name
  load_balancer_type               = "network"
  internal                         = var.internal
  subnets                          = var.subnet_ids
  security_groups                  = [aws_security_group.this.id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.enable_deletion_protection

  tags = var.tags
}

resource "aws_lb_target_group" "this" {
  name                 = var.name
  port                 = var.target_port
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay
  preserve_client_ip   = true

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = var.health_check_path
    matcher             = "200"
    interval            = var.health_check_interval
    timeout             = 5
    healthy_threshold   = var.health_check_threshold
    unhealthy_threshold = var.health_check_threshold
  }

  tags = var.tags
}

resource "aws_lb_listener" "this" {
  load_balancer_arn = aws_lb.this.arn
  port              = var.port
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
