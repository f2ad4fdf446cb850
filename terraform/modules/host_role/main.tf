# The IAM role and instance profile of the database hosts of one region. Least privilege:
# the backup objects under one prefix of one bucket (read-write in the primary region,
# read-only in the DR region), the one KMS key of that bucket, the one SSM parameter that
# holds the replication password and its key, and Session Manager (no SSH anywhere).

data "aws_partition" "current" {}

locals {
  prefix = trimsuffix(var.backup_prefix, "/")

  object_read_actions  = ["s3:GetObject", "s3:GetObjectVersion"]
  object_write_actions = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]

  kms_read_actions  = ["kms:Decrypt", "kms:DescribeKey"]
  kms_write_actions = ["kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "ListBackupPrefixOnly"
    actions   = ["s3:ListBucket"]
    resources = [var.backup_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.prefix}/*", "${local.prefix}/"]
    }
  }

  statement {
    sid       = "BackupObjects"
    actions   = var.backup_write ? concat(local.object_read_actions, local.object_write_actions) : local.object_read_actions
    resources = ["${var.backup_bucket_arn}/${local.prefix}/*"]
  }

  statement {
    sid       = "BackupKey"
    actions   = var.backup_write ? concat(local.kms_read_actions, local.kms_write_actions) : local.kms_read_actions
    resources = [var.backup_kms_key_arn]
  }

  # The cross-region fence record (src/fence.rs) in every region's bucket: every host
  # reads them all; the DR hosts also write them (dob-promote --takeover).
  dynamic "statement" {
    for_each = length(var.fence_object_arns) > 0 ? [1] : []
    content {
      sid       = "FenceRecord"
      actions   = var.fence_write ? ["s3:GetObject", "s3:PutObject"] : ["s3:GetObject"]
      resources = var.fence_object_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.fence_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "FenceRecordKeys"
      actions   = var.fence_write ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]
      resources = var.fence_kms_key_arns
      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["s3.*.amazonaws.com"]
      }
    }
  }

  statement {
    sid     = "ReplicationPassword"
    actions = ["ssm:GetParameter"]
    # Patroni's passwords (superuser, replication, rewind, app, restapi) live under one
    # prefix; the hosts read them and nothing else.
    resources = concat(
      [var.replication_password_parameter_arn],
      var.secrets_parameter_arn_prefix == "" ? [] : ["${var.secrets_parameter_arn_prefix}*"],
    )
  }

  statement {
    sid       = "ReplicationPasswordKey"
    actions   = ["kms:Decrypt"]
    resources = [var.replication_password_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix        = "${var.name}-"
  description        = "dob database hosts (${var.name})"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "dob-host"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

# Session Manager instead of SSH. Caveat: this AWS-managed policy also allows
# ssm:GetParameter(s) on every parameter; secrets stay readable only by those who may
# decrypt them, which is why the replication password uses its own KMS key.
resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-"
  role        = aws_iam_role.this.name

  tags = var.tags
}
