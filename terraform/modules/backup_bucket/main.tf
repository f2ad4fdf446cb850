# The backup bucket of the primary region and its replica in the DR region.
#
# Both buckets: SSE-KMS with their own customer-managed key (rotated), versioning, every
# public access blocked, ACLs disabled, bucket policies that deny plain HTTP and any
# encryption but their own key, a lifecycle that expires old versions and abandoned
# multipart uploads, and server access logs in a log bucket of the same region. The source replicates every object version and delete
# marker to the replica (with Replication Time Control: 99.99% of objects within 15 min).

data "aws_caller_identity" "current" {
  provider = aws.source
}

data "aws_partition" "current" {
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
  partition  = data.aws_partition.current.partition

  source_logs_bucket  = "${var.bucket_name}-logs"
  replica_logs_bucket = "${var.replica_bucket_name}-logs"
}

# --- keys ---------------------------------------------------------------------------------

module "source_key" {
  source    = "../kms_key"
  providers = { aws = aws.source }

  alias       = "${var.name}-backups"
  description = "dob backups in s3://${var.bucket_name}"
  tags        = var.tags
}

module "replica_key" {
  source    = "../kms_key"
  providers = { aws = aws.replica }

  alias       = "${var.name}-backups-replica"
  description = "dob backup replicas in s3://${var.replica_bucket_name}"
  tags        = var.tags
}

# --- the source bucket -------------------------------------------------------------------

resource "aws_s3_bucket" "this" {
  provider = aws.source

  bucket        = var.bucket_name
  force_destroy = false

  tags = var.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  provider = aws.source

  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  provider = aws.source

  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  provider = aws.source

  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  provider = aws.source

  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.source_key.key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  provider = aws.source

  bucket = aws_s3_bucket.this.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    # dob-backup's retention deletes old dumps; their versions stay recoverable this long.
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    # A dump interrupted mid-stream leaves parts behind; they are never a backup.
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# Object events go to EventBridge, where alerting rules can watch for new manifests
# (e.g. "no backup in 26 hours") without touching the bucket again.
resource "aws_s3_bucket_notification" "this" {
  provider = aws.source

  bucket      = aws_s3_bucket.this.id
  eventbridge = true
}

resource "aws_s3_bucket_logging" "this" {
  provider = aws.source

  bucket        = aws_s3_bucket.this.id
  target_bucket = module.source_logs.id
  target_prefix = "s3/${var.bucket_name}/"
}

data "aws_iam_policy_document" "this" {
  provider = aws.source

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # Default encryption already makes every object SSE-KMS with this bucket's key. These
  # deny only what a client asks for explicitly: SSE-S3, or another KMS key. (A deny on an
  # absent header would also refuse UploadPart, which never carries one.)
  statement {
    sid       = "DenyUploadsAskingForSseS3"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["AES256"]
    }
  }

  statement {
    sid       = "DenyUploadsAskingForAnotherKmsKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [module.source_key.key_arn]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  provider = aws.source

  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.this.json

  depends_on = [aws_s3_bucket_public_access_block.this]
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
    resources = [aws_s3_bucket.this.arn]
  }

  statement {
    sid       = "ReadSourceVersions"
    actions   = ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"]
    resources = ["${aws_s3_bucket.this.arn}/*"]
  }

  statement {
    sid       = "WriteReplicas"
    actions   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
    resources = ["${aws_s3_bucket.replica.arn}/*"]
  }

  statement {
    sid       = "DecryptSource"
    actions   = ["kms:Decrypt"]
    resources = [module.source_key.key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.source.name}.amazonaws.com"]
    }
  }

  statement {
    sid       = "EncryptReplicas"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [module.replica_key.key_arn]
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

  bucket = aws_s3_bucket.this.id
  role   = aws_iam_role.replication.arn

  rule {
    id       = "backups-to-${data.aws_region.replica.name}"
    status   = "Enabled"
    priority = 1
    filter {}

    delete_marker_replication {
      status = "Enabled"
    }

    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }

    destination {
      bucket        = aws_s3_bucket.replica.arn
      storage_class = "STANDARD"

      encryption_configuration {
        replica_kms_key_id = module.replica_key.key_arn
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
  depends_on = [aws_s3_bucket_versioning.this, aws_s3_bucket_versioning.replica]
}

# --- the replica bucket (DR region) ----------------------------------------------------------

resource "aws_s3_bucket" "replica" {
  provider = aws.replica

  bucket        = var.replica_bucket_name
  force_destroy = false

  tags = var.tags
}

resource "aws_s3_bucket_ownership_controls" "replica" {
  provider = aws.replica

  bucket = aws_s3_bucket.replica.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "replica" {
  provider = aws.replica

  bucket                  = aws_s3_bucket.replica.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "replica" {
  provider = aws.replica

  bucket = aws_s3_bucket.replica.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "replica" {
  provider = aws.replica

  bucket = aws_s3_bucket.replica.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.replica_key.key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "replica" {
  provider = aws.replica

  bucket = aws_s3_bucket.replica.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.replica]
}

resource "aws_s3_bucket_notification" "replica" {
  provider = aws.replica

  bucket      = aws_s3_bucket.replica.id
  eventbridge = true
}

resource "aws_s3_bucket_logging" "replica" {
  provider = aws.replica

  bucket        = aws_s3_bucket.replica.id
  target_bucket = module.replica_logs.id
  target_prefix = "s3/${var.replica_bucket_name}/"
}

data "aws_iam_policy_document" "replica" {
  provider = aws.replica

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.replica.arn, "${aws_s3_bucket.replica.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # Default encryption already makes every object SSE-KMS with this bucket's key. These
  # deny only what a client asks for explicitly: SSE-S3, or another KMS key. (A deny on an
  # absent header would also refuse UploadPart, which never carries one.)
  statement {
    sid       = "DenyUploadsAskingForSseS3"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.replica.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["AES256"]
    }
  }

  statement {
    sid       = "DenyUploadsAskingForAnotherKmsKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.replica.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [module.replica_key.key_arn]
    }
  }
}

resource "aws_s3_bucket_policy" "replica" {
  provider = aws.replica

  bucket = aws_s3_bucket.replica.id
  policy = data.aws_iam_policy_document.replica.json

  depends_on = [aws_s3_bucket_public_access_block.replica]
}

# --- server access log buckets (one per region: logs must stay in the bucket's region) ---

module "source_logs" {
  source = "../access_log_bucket"
  providers = {
    aws = aws.source
  }

  bucket_name                            = local.source_logs_bucket
  log_source_buckets                     = concat([var.bucket_name], var.source_region_log_sources)
  retention_days                         = var.access_log_retention_days
  abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days
  tags                                   = var.tags
}

module "replica_logs" {
  source = "../access_log_bucket"
  providers = {
    aws = aws.replica
  }

  bucket_name                            = local.replica_logs_bucket
  log_source_buckets                     = concat([var.replica_bucket_name], var.replica_region_log_sources)
  retention_days                         = var.access_log_retention_days
  abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days
  tags                                   = var.tags
}
