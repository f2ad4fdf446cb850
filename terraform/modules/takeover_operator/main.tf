# The takeover operator: the one role that may write the promotion epoch (which region
# writes) and isolate a region's database tier through its EC2 API. A person assumes it,
# with MFA, for `dob-promote --fence-init` at deploy and for `--takeover` and
# `--lift-isolation` on a host (its temporary credentials in the environment: the
# standard chain reads them first). No host role may do any of this (modules/host_role
# denies the epoch to every host), so a compromised host can neither move writes to its
# region nor stop the other one. Created only when operator_principal_arns is set.

data "aws_partition" "current" {}

locals {
  enabled = length(var.operator_principal_arns) > 0
  # Statement ids are alphanumeric: eu-west-1 -> EuWest1.
  sid_suffix = { for p in var.isolation_peers : p.region => replace(title(replace(p.region, "-", " ")), " ", "") }
}

data "aws_iam_policy_document" "assume" {
  count = local.enabled ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.operator_principal_arns
    }
    dynamic "condition" {
      for_each = var.require_mfa ? [1] : []
      content {
        test     = "Bool"
        variable = "aws:MultiFactorAuthPresent"
        values   = ["true"]
      }
    }
  }
}

data "aws_iam_policy_document" "this" {
  # Both fence records in every fence bucket: the epoch (--takeover, --fence-init) and
  # the DR receipt state (--fence-init creates it).
  statement {
    sid       = "FenceRecords"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = var.fence_object_arns
  }

  statement {
    sid       = "FenceRecordKeys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = var.fence_kms_key_arns
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = ["s3.*.amazonaws.com"]
    }
  }

  # Isolating a region's database tier through its EC2 API (src/failover/isolation.rs):
  # read what the group has; move its subnets between network ACLs of its VPC; stop and
  # start the instances of the group; set and remove the two tags that record what a
  # takeover did. Nothing else of that region.
  dynamic "statement" {
    for_each = var.isolation_peers
    content {
      sid       = "IsolationRead${local.sid_suffix[statement.value.region]}"
      actions   = ["ec2:DescribeNetworkAcls", "ec2:DescribeSubnets", "ec2:DescribeInstances"]
      resources = ["*"]
      condition {
        test     = "StringEquals"
        variable = "aws:RequestedRegion"
        values   = [statement.value.region]
      }
    }
  }

  dynamic "statement" {
    for_each = var.isolation_peers
    content {
      sid     = "IsolationNetworkAcl${local.sid_suffix[statement.value.region]}"
      actions = ["ec2:ReplaceNetworkAclAssociation"]
      resources = [
        "arn:${data.aws_partition.current.partition}:ec2:${statement.value.region}:*:network-acl/*",
        "arn:${data.aws_partition.current.partition}:ec2:${statement.value.region}:*:subnet/*",
      ]
      condition {
        test     = "StringEquals"
        variable = "ec2:Vpc"
        values   = [statement.value.vpc_arn]
      }
    }
  }

  dynamic "statement" {
    for_each = var.isolation_peers
    content {
      sid       = "IsolationInstances${local.sid_suffix[statement.value.region]}"
      actions   = ["ec2:StopInstances", "ec2:StartInstances"]
      resources = ["arn:${data.aws_partition.current.partition}:ec2:${statement.value.region}:*:instance/*"]
      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/dob:fence-group"
        values   = [statement.value.group]
      }
    }
  }

  dynamic "statement" {
    for_each = var.isolation_peers
    content {
      sid     = "IsolationRecords${local.sid_suffix[statement.value.region]}"
      actions = ["ec2:CreateTags", "ec2:DeleteTags"]
      resources = [
        "arn:${data.aws_partition.current.partition}:ec2:${statement.value.region}:*:instance/*",
        "arn:${data.aws_partition.current.partition}:ec2:${statement.value.region}:*:subnet/*",
      ]
      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/dob:fence-group"
        values   = [statement.value.group]
      }
      condition {
        test     = "ForAllValues:StringEquals"
        variable = "aws:TagKeys"
        values   = ["dob:isolated-from-acl", "dob:stopped-by-takeover"]
      }
    }
  }

}

resource "aws_iam_role" "this" {
  count = local.enabled ? 1 : 0

  name                 = var.name
  description          = "dob takeover operator: the promotion epoch, and isolating a region's database tier"
  assume_role_policy   = data.aws_iam_policy_document.assume[0].json
  permissions_boundary = var.permissions_boundary_arn
  max_session_duration = 3600

  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  count = local.enabled ? 1 : 0

  name   = "takeover"
  role   = aws_iam_role.this[0].id
  policy = data.aws_iam_policy_document.this.json
}
