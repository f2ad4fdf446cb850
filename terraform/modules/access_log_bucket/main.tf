# A bucket for S3 server access logs, in one region (logs must stay in the region of the
# buckets they describe): owner-enforced, private, versioned, SSE-S3 (server access
# logging cannot deliver to SSE-KMS), TLS-only, writable only by S3's logging service
# for the listed source buckets of this account, expiring after `retention_days`.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  # Log delivery acts for this account's load balancers of this region only (confused deputy).
  log_delivery_source_arn = "arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:*"
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:This is the access-log bucket itself; logging its own access would write logs about logs (AWS advises against a bucket logging into itself).
  #checkov:skip=CKV_AWS_144:Access logs are regional audit records kept in their region; the backups they describe are the data that is replicated.
  #checkov:skip=CKV_AWS_145:S3 server access logging cannot deliver to a bucket encrypted with SSE-KMS; it is encrypted with SSE-S3 (AES256) instead.
  bucket        = var.bucket_name
  force_destroy = false

  tags = var.tags
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
      sse_algorithm = "AES256"
    }
  }
}

# Log deliveries go to EventBridge like the backup buckets' events: with load balancer
# logs here too, a rule can alert when deliveries stop (a silent audit trail is a finding).
resource "aws_s3_bucket_notification" "this" {
  bucket      = aws_s3_bucket.this.id
  eventbridge = true
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
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

  statement {
    sid       = "S3ServerAccessLogsFromItsSources"
    actions   = ["s3:PutObject"]
    resources = [for b in var.log_source_buckets : "${aws_s3_bucket.this.arn}/s3/${b}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [for b in var.log_source_buckets : "arn:${data.aws_partition.current.partition}:s3:::${b}"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  # Network load balancer access logs (AWS: "Enable access logs for your Network Load
  # Balancer"): delivery checks the bucket ACL, then writes under <prefix>/AWSLogs/<account>/.
  dynamic "statement" {
    for_each = length(var.log_delivery_prefixes) > 0 ? [1] : []
    content {
      sid       = "LoadBalancerLogDeliveryAclCheck"
      actions   = ["s3:GetBucketAcl"]
      resources = [aws_s3_bucket.this.arn]
      principals {
        type        = "Service"
        identifiers = ["delivery.logs.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }
      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = [local.log_delivery_source_arn]
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.log_delivery_prefixes) > 0 ? [1] : []
    content {
      sid       = "LoadBalancerLogDeliveryWrite"
      actions   = ["s3:PutObject"]
      resources = [for p in var.log_delivery_prefixes : "${aws_s3_bucket.this.arn}/${p}/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]
      principals {
        type        = "Service"
        identifiers = ["delivery.logs.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "s3:x-amz-acl"
        values   = ["bucket-owner-full-control"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }
      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = [local.log_delivery_source_arn]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.this.json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

