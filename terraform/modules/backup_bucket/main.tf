# The backup bucket of the primary region and its replica in the DR region.
#
# Each is a kms_bucket (its own KMS key, versioned, Object Lock with a default retention,
# private, TLS-only, access logs in its region). The source replicates every object
# version, with its lock, to the replica (with Replication Time Control: 99.99% of objects
# within 15 min); delete markers are not replicated, so a delete in the source (there is
# none but the lifecycle's, which never replicates) cannot hide a replica. The backups'
# current versions expire in both buckets once their lock has run out.

data "aws_caller_identity" "current" {
  provider = aws.source
}

data "aws_region" "source" {
  provider = aws.source
}

data "aws_region" "replica" {
  provider = aws.replica
}

locals {
  account_id = data.aws_caller_identity.current.account_id

  # Backup ids start with their UTC start year (src/backup/manifest.rs: YYYYMMDDTHHMMSS...), so
  # "<prefix>/<digit>" covers every backup and never the fence record (<prefix>/fence/).
  backup_prefix          = trimsuffix(var.backup_prefix, "/")
  backup_expiry_prefixes = [for d in range(10) : "${local.backup_prefix}/${d}"]
}

module "source" {
  source    = "../kms_bucket"
  providers = { aws = aws.source }

  bucket_name                            = var.bucket_name
  key_alias                              = "${var.name}-backups"
  key_description                        = "dob backups in s3://${var.bucket_name}"
  noncurrent_version_expiration_days     = var.noncurrent_version_expiration_days
  abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days
  object_lock_mode                       = var.object_lock_mode
  object_lock_retention_days             = var.retention_days
  current_version_expiration_prefixes    = local.backup_expiry_prefixes
  access_log_retention_days              = var.access_log_retention_days
  other_log_sources                      = var.source_region_log_sources
  log_delivery_prefixes                  = var.source_region_log_delivery_prefixes
  tags                                   = var.tags
}

module "replica" {
  source    = "../kms_bucket"
  providers = { aws = aws.replica }

  bucket_name                            = var.replica_bucket_name
  key_alias                              = "${var.name}-backups-replica"
  key_description                        = "dob backup replicas in s3://${var.replica_bucket_name}"
  noncurrent_version_expiration_days     = var.noncurrent_version_expiration_days
  abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days
  object_lock_mode                       = var.object_lock_mode
  object_lock_retention_days             = var.retention_days
  current_version_expiration_prefixes    = local.backup_expiry_prefixes
  access_log_retention_days              = var.access_log_retention_days
  other_log_sources                      = var.replica_region_log_sources
  log_delivery_prefixes                  = var.replica_region_log_delivery_prefixes
  tags                                   = var.tags
}

# --- replication ---------------------------------------------------------------------------

data "aws_iam_policy_document" "replication_assume" {
  provider = aws.source

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "replication" {
  provider = aws.source

  statement {
    sid       = "ReadSourceConfiguration"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [module.source.arn]
  }

  statement {
    sid = "ReadSourceVersions"
    # Retention and legal hold too: replicas carry the source version's lock.
    actions = [
      "s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging",
      "s3:GetObjectRetention", "s3:GetObjectLegalHold",
    ]
    resources = ["${module.source.arn}/*"]
  }

  statement {
    sid = "WriteReplicas"
    # No s3:ReplicateDelete: delete markers are not replicated.
    actions   = ["s3:ReplicateObject", "s3:ReplicateTags"]
    resources = ["${module.replica.arn}/*"]
  }

  statement {
    sid       = "DecryptSource"
    actions   = ["kms:Decrypt"]
    resources = [module.source.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.source.name}.amazonaws.com"]
    }
  }

  statement {
    sid       = "EncryptReplicas"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [module.replica.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.replica.name}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "replication" {
  provider = aws.source

  name_prefix        = "${var.name}-s3-replication-"
  description        = "S3 replication of s3://${var.bucket_name} to s3://${var.replica_bucket_name}"
  assume_role_policy = data.aws_iam_policy_document.replication_assume.json
  # The deploy role creates roles only with the project's boundary.
  permissions_boundary = var.permissions_boundary_arn

  tags = var.tags
}

resource "aws_iam_role_policy" "replication" {
  provider = aws.source

  name   = "replicate-backups"
  role   = aws_iam_role.replication.id
  policy = data.aws_iam_policy_document.replication.json
}

resource "aws_s3_bucket_replication_configuration" "this" {
  provider = aws.source

  bucket = module.source.id
  role   = aws_iam_role.replication.arn

  rule {
    id       = "backups-to-${data.aws_region.replica.name}"
    status   = "Enabled"
    priority = 1
    filter {}

    # A delete marker in the source must not hide the replica's copy: the replica is
    # where the backups survive a compromised primary region.
    delete_marker_replication {
      status = "Disabled"
    }

    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }

    destination {
      bucket        = module.replica.arn
      storage_class = "STANDARD"

      encryption_configuration {
        replica_kms_key_id = module.replica.kms_key_arn
      }

      replication_time {
        status = "Enabled"
        time {
          minutes = 15
        }
      }

      metrics {
        status = "Enabled"
        event_threshold {
          minutes = 15
        }
      }
    }
  }

  # Replication needs versioning on both sides first.
  depends_on = [module.source, module.replica]
}
