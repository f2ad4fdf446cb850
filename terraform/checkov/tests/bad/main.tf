# Fixtures for CKV_DOB_1 (terraform/checkov/postgres_not_open_to_world.py): EVERY resource
# here opens PostgreSQL to the world and must FAIL. scripts/ci/check-terraform.sh checks
# that each one does. Never applied; not part of the deployment.

variable "db_port" {
  description = "A port that checkov resolves from the default."
  type        = number
  default     = 5432
}

resource "aws_security_group" "bad_inline_exact_port" {
  name        = "bad-inline-exact-port"
  description = "5432 from anywhere, after a harmless rule"
  vpc_id      = "vpc-0123456789abcdef0"

  ingress {
    description = "HTTPS from anywhere (fine)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  ingress {
    description = "PostgreSQL from anywhere"
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = ["10.0.0.0/8", "0.0.0.0/0"]
  }
}

resource "aws_security_group" "bad_inline_ipv6_range" {
  name        = "bad-inline-ipv6-range"
  description = "A port range containing 5432 from any IPv6 address"
  vpc_id      = "vpc-0123456789abcdef0"

  ingress {
    description      = "5000-6000 from anywhere (IPv6)"
    from_port        = 5000
    to_port          = 6000
    protocol         = "6"
    ipv6_cidr_blocks = ["::/0"]
  }
}

resource "aws_security_group" "bad_inline_all_protocols" {
  name        = "bad-inline-all-protocols"
  description = "Everything from anywhere"
  vpc_id      = "vpc-0123456789abcdef0"

  ingress {
    description = "All traffic"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group_rule" "bad_rule_all_tcp_ports" {
  type              = "ingress"
  description       = "All TCP ports from anywhere"
  security_group_id = "sg-0123456789abcdef0"
  from_port         = 0
  to_port           = 65535
  protocol          = "tcp"
  cidr_blocks       = ["0.0.0.0/0"]
}

resource "aws_security_group_rule" "bad_rule_variable_port" {
  type              = "ingress"
  description       = "PostgreSQL through a variable, from anywhere"
  security_group_id = "sg-0123456789abcdef0"
  from_port         = var.db_port
  to_port           = var.db_port
  protocol          = "tcp"
  cidr_blocks       = ["0.0.0.0/0"]
}

resource "aws_vpc_security_group_ingress_rule" "bad_vpc_rule_exact_port" {
  security_group_id = "sg-0123456789abcdef0"
  description       = "PostgreSQL from anywhere"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "bad_vpc_rule_all_protocols" {
  security_group_id = "sg-0123456789abcdef0"
  description       = "Everything from anywhere (no ports: ip_protocol -1)"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "bad_vpc_rule_ipv6" {
  security_group_id = "sg-0123456789abcdef0"
  description       = "PostgreSQL from any IPv6 address"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv6         = "::/0"
}
