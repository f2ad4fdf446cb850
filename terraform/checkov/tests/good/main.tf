# Fixtures for CKV_DOB_1 (terraform/checkov/postgres_not_open_to_world.py): EVERY resource
# here keeps PostgreSQL closed to the world and must PASS (some open other ports, or
# open 5432 to private peers only). Never applied; not part of the deployment.

resource "aws_security_group" "good_inline_private_peers" {
  name        = "good-inline-private-peers"
  description = "PostgreSQL from a private network, HTTPS from anywhere"
  vpc_id      = "vpc-0123456789abcdef0"

  ingress {
    description = "PostgreSQL from the peers"
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = ["10.10.0.10/32", "10.20.0.0/16"]
  }

  ingress {
    description = "HTTPS from anywhere"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description = "PostgreSQL to anywhere (egress is not what this check is about)"
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "good_inline_ranges_around_5432" {
  name        = "good-inline-ranges-around-5432"
  description = "World-open ranges that stop just short of 5432 on either side"
  vpc_id      = "vpc-0123456789abcdef0"

  ingress {
    description = "Below"
    from_port   = 5000
    to_port     = 5431
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  ingress {
    description      = "Above"
    from_port        = 5433
    to_port          = 6000
    protocol         = "tcp"
    ipv6_cidr_blocks = ["::/0"]
  }
}

resource "aws_security_group_rule" "good_rule_egress_world" {
  type              = "egress"
  description       = "Egress to PostgreSQL anywhere"
  security_group_id = "sg-0123456789abcdef0"
  from_port         = 5432
  to_port           = 5432
  protocol          = "tcp"
  cidr_blocks       = ["0.0.0.0/0"]
}

resource "aws_security_group_rule" "good_rule_security_group_source" {
  type                     = "ingress"
  description              = "PostgreSQL from the app security group"
  security_group_id        = "sg-0123456789abcdef0"
  from_port                = 5432
  to_port                  = 5432
  protocol                 = "tcp"
  source_security_group_id = "sg-0fedcba9876543210"
}

resource "aws_vpc_security_group_ingress_rule" "good_vpc_rule_peer" {
  security_group_id = "sg-0123456789abcdef0"
  description       = "PostgreSQL from one peer host"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = "10.20.0.10/32"
}

resource "aws_vpc_security_group_ingress_rule" "good_vpc_rule_api_world" {
  security_group_id = "sg-0123456789abcdef0"
  description       = "The API from anywhere"
  ip_protocol       = "tcp"
  from_port         = 8080
  to_port           = 8080
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "good_vpc_rule_all_from_private" {
  security_group_id = "sg-0123456789abcdef0"
  description       = "Everything from a private network"
  ip_protocol       = "-1"
  cidr_ipv4         = "10.0.0.0/8"
}
