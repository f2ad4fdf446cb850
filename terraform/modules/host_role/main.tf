# The IAM role and instance profile of the database hosts of one region. Least privilege:
# the backup objects under one prefix of one bucket (read and add in the primary region,
# read-only in the DR region; never delete, shorten a lock or bypass one), the one KMS key
# of that bucket, the SSM parameters Terraform made for the hosts (passwords, the CA
# certificate, the region's host certificates and keys) and their key, CloudWatch metrics
# in the project's namespace (the alarms' figures), and Session Manager (no SSH anywhere). The role carries the project's permissions boundary.

data "aws_partition" "current" {}

locals {
  prefix = trimsuffix(var.backup_prefix, "/")
  # pgBackRest's repository (WAL archive and physical backups), beside the logical ones.
  pgbackrest_prefix = trimsuffix(var.pgbackrest_prefix, "/")
  # The DR region's own repository, written only after a takeover promoted it.
  own_pgbackrest_prefix = var.own_pgbackrest_prefix == null ? null : trimsuffix(var.own_pgbackrest_prefix, "/")
  repository_prefixes   = compact([local.pgbackrest_prefix, local.own_pgbackrest_prefix])
  key_write             = var.backup_write || var.own_pgbackrest_prefix != null

  object_read_actions = ["s3:GetObject", "s3:GetObjectVersion"]
  # Add, never remove: the buckets' Object Lock and lifecycle retire old backups, so a
  # compromised host cannot destroy them (dob-backup runs with DOB_BACKUP_KEEP=0). An
  # interrupted dump's parts may be aborted: they were never an object.
  object_write_actions = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]

  # What no host may do to a backup, whatever else grants it (AmazonSSMManagedInstanceCore
  # grants no S3 today; this keeps it so). terraform_static.py fails an Allow of these.
  object_destroy_actions = [
    "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging",
  ]

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
      values   = concat(["${local.prefix}/*", "${local.prefix}/"], flatten([for p in local.repository_prefixes : ["${p}/*", "${p}/"]]))
    }
  }

  # pgBackRest's repository: archive-push and backups add; expire (after each backup,
  # time-based retention) removes, so the primary region's hosts may DeleteObject here and
  # only here. In a versioned bucket under Object Lock that adds a delete marker: every
  # version stays, locked for backup_retention_days, and an operator can bring it back by
  # removing the marker; deleting a version, or shortening or bypassing a lock, stays
  # denied below. The DR hosts read it (archive-get, restores) through the replica bucket.
  statement {
    sid       = "PgBackRestRepository"
    actions   = var.backup_write ? concat(local.object_read_actions, local.object_write_actions, ["s3:DeleteObject"]) : local.object_read_actions
    resources = ["${var.backup_bucket_arn}/${local.pgbackrest_prefix}/*"]
  }

  # The DR region's own repository: archive-push and backups from the takeover's
  # promotion on, expire's delete markers, as the primary region's hosts have theirs.
  dynamic "statement" {
    for_each = local.own_pgbackrest_prefix == null ? [] : [1]
    content {
      sid       = "OwnPgBackRestRepository"
      actions   = concat(local.object_read_actions, local.object_write_actions, ["s3:DeleteObject"])
      resources = ["${var.backup_bucket_arn}/${local.own_pgbackrest_prefix}/*"]
    }
  }

  statement {
    sid       = "BackupObjects"
    actions   = var.backup_write ? concat(local.object_read_actions, local.object_write_actions) : local.object_read_actions
    resources = ["${var.backup_bucket_arn}/${local.prefix}/*"]
  }

  statement {
    sid       = "BackupKey"
    actions   = local.key_write ? concat(local.kms_read_actions, local.kms_write_actions) : local.kms_read_actions
    resources = [var.backup_kms_key_arn]
  }

  # The cross-region fence records (src/failover/fence.rs) in every fence bucket: every
  # host reads both keys, and writes the DR receipt state (`detach`: the writing region's
  # dob-api records going on alone, and coming back). The promotion epoch is the takeover
  # operator's alone (modules/takeover_operator), denied below.
  dynamic "statement" {
    for_each = length(var.fence_object_arns) > 0 ? [1] : []
    content {
      sid       = "FenceRecords"
      actions   = ["s3:GetObject"]
      resources = var.fence_object_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.fence_detach_object_arns) > 0 ? [1] : []
    content {
      sid       = "FenceReceiptState"
      actions   = ["s3:PutObject"]
      resources = var.fence_detach_object_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.fence_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "FenceRecordKeys"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = var.fence_kms_key_arns
      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["s3.*.amazonaws.com"]
      }
    }
  }

  # The promotion epoch decides which region writes: no host may write it, whatever its
  # backup grant covers (the epoch key sits under the backup prefix the hosts write). A
  # compromised host cannot move writes to its region, or away from it.
  dynamic "statement" {
    for_each = length(var.fence_epoch_object_arns) > 0 ? [1] : []
    content {
      sid       = "NeverWriteThePromotionEpoch"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = var.fence_epoch_object_arns
    }
  }

  statement {
    sid       = "NeverDestroyBackups"
    effect    = "Deny"
    actions   = [for a in local.object_destroy_actions : a if a != "s3:DeleteObject"]
    resources = ["${var.backup_bucket_arn}/*"]
  }

  # The logical backups and the fence record: not even a delete marker.
  statement {
    sid       = "NeverDeleteLogicalBackups"
    effect    = "Deny"
    actions   = ["s3:DeleteObject"]
    resources = ["${var.backup_bucket_arn}/${local.prefix}/*"]
  }

  # The parameters Terraform made for these hosts (modules/credentials), by exact ARN.
  statement {
    sid       = "HostParameters"
    actions   = ["ssm:GetParameter"]
    resources = var.parameter_arns
  }

  # SecureStrings are decrypted with the caller's rights, and SSM names the parameter in
  # the encryption context: the key opens these parameters only, through SSM only. That is
  # what keeps AmazonSSMManagedInstanceCore's ssm:GetParameter on "*" from reaching any
  # other SecureString under this key.
  statement {
    sid       = "HostParametersKey"
    actions   = ["kms:Decrypt"]
    resources = [var.parameters_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:PARAMETER_ARN"
      values   = var.parameter_arns
    }
  }

  # The figures the alarms watch (scripts/publish-metrics.sh: backup, drill and WAL
  # archive ages, replication lag), into the project's own namespace only. PutMetricData
  # has no resource-level permissions: the namespace condition is the fence.
  statement {
    sid       = "PublishMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  # Operators' secrets (the CA's private key), named here as well as kept under a key the
  # hosts cannot use.
  dynamic "statement" {
    for_each = length(var.denied_parameter_arns) > 0 ? [1] : []
    content {
      sid       = "NeverOperatorSecrets"
      effect    = "Deny"
      actions   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory"]
      resources = var.denied_parameter_arns
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix        = "${var.name}-"
  description        = "dob database hosts (${var.name})"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  # Whatever a policy of this role ever says, no IAM and no destroying backups.
  permissions_boundary = var.permissions_boundary_arn

  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "dob-host"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

# Session Manager instead of SSH. Caveat: this AWS-managed policy also allows
# ssm:GetParameter(s) on every parameter; secrets stay readable only by those who may
# decrypt them (HostParametersKey above), and Strings are not secrets.
resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-"
  role        = aws_iam_role.this.name

  tags = var.tags
}
