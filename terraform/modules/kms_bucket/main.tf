# One private bucket of one region, encrypted with its own customer-managed KMS key
# (rotated): versioning, Object Lock with a default retention (every new object version
# is locked that long: nobody without s3:BypassGovernanceRetention, in GOVERNANCE mode, or
# nobody at all, in COMPLIANCE mode, can delete it or shorten its lock), every public
# access blocked, ACLs disabled, a policy that denies plain HTTP and any encryption but its
# key, a lifecycle that expires what the lock has released and abandoned multipart
# uploads, object events to EventBridge, and server access logs in a log bucket of the
# same region (`<bucket_name>-logs`, module access_log_bucket).
# backup_bucket uses it twice: the backup bucket and its cross-region replica.

module "key" {
  source = "../kms_key"

  alias       = var.key_alias
  description = var.key_description
  tags        = var.tags
}

module "logs" {
  source = "../access_log_bucket"

  bucket_name                            = "${var.bucket_name}-logs"
  log_source_buckets                     = concat([var.bucket_name], var.other_log_sources)
  log_delivery_prefixes                  = var.log_delivery_prefixes
  retention_days                         = var.access_log_retention_days
  abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days
  tags                                   = var.tags
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Replication joins two buckets, so the module that owns the pair configures it (backup_bucket replicates its source into its replica); checkov does not follow that configuration into this module.
  bucket        = var.bucket_name
  force_destroy = false
  # A lock can only be set on a bucket created with it (or enabled later through the API,
  # see terraform/README.md for existing buckets).
  object_lock_enabled = true

  tags = var.tags
}

# Every new object version is locked for object_lock_retention_days from its creation:
# not deletable, its lock not shortened, by a compromised host or anyone else without the
# right (GOVERNANCE: s3:BypassGovernanceRetention, which no role of this project has;
# COMPLIANCE: nobody, not even the account root).
resource "aws_s3_bucket_object_lock_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_retention_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.key.key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  # Retention is the bucket's: the current versions under these prefixes (the backups)
  # expire once their lock has run out. Anything else (the fence record) stays current.
  dynamic "rule" {
    for_each = var.current_version_expiration_prefixes
    content {
      id     = "expire-current-${replace(rule.value, "/", "-")}"
      status = "Enabled"
      filter {
        prefix = rule.value
      }
      expiration {
        days = var.object_lock_retention_days
      }
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    # An expired or overwritten version (each write of the fence record makes one) is
    # deleted this many days after it stopped being current, and never before its lock
    # ends (S3 does not delete a locked version; lifecycle tries again daily).
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  rule {
    id     = "remove-expired-delete-markers"
    status = "Enabled"
    filter {}
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    # An upload interrupted mid-stream (a failed dump) leaves parts behind; they are never
    # an object anyone can read.
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# Object events go to EventBridge, for whoever wants them later, without touching the
# bucket again. No rule consumes them: "no backup in 26 h" is the backup-age alarm's to
# report (terraform/alarms.tf, fed by the hosts), since an event rule cannot notice an
# event that never happens.
resource "aws_s3_bucket_notification" "this" {
  bucket      = aws_s3_bucket.this.id
  eventbridge = true
}

resource "aws_s3_bucket_logging" "this" {
  bucket        = aws_s3_bucket.this.id
  target_bucket = module.logs.id
  target_prefix = "s3/${var.bucket_name}/"
}

data "aws_iam_policy_document" "this" {
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
      values   = [module.key.key_arn]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.this.json

  depends_on = [aws_s3_bucket_public_access_block.this]
}
