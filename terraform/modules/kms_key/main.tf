# A customer-managed KMS key with yearly rotation and an explicit key policy: the account
# administers it through IAM (so roles get use rights from their own IAM policies, and
# nothing else can use it), and CloudWatch Logs may use it for this account's log groups,
# and CloudWatch alarms for this account's encrypted SNS topics, when asked.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"

  account_statement = {
    Sid       = "AccountAdministersKeyThroughIam"
    Effect    = "Allow"
    Principal = { AWS = local.account_root }
    Action    = "kms:*"
    # In a key policy "*" means "this key".
    Resource = "*"
  }

  logs_statement = {
    Sid    = "CloudWatchLogsEncryptsThisAccountsLogGroups"
    Effect = "Allow"
    Principal = {
      Service = "logs.${data.aws_region.current.name}.amazonaws.com"
    }
    Action = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    Resource = "*"
    Condition = {
      ArnLike = {
        "kms:EncryptionContext:aws:logs:arn" = "arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:*"
      }
    }
  }

  # An alarm's notification is published by CloudWatch itself: to an encrypted topic it
  # needs a data key (and SNS decrypts with it on delivery). Only this account's alarms.
  alarms_statement = {
    Sid       = "CloudWatchAlarmsPublishToThisAccountsTopics"
    Effect    = "Allow"
    Principal = { Service = "cloudwatch.amazonaws.com" }
    Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
    Resource  = "*"
    Condition = {
      StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id }
      ArnLike      = { "aws:SourceArn" = "arn:${data.aws_partition.current.partition}:cloudwatch:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:alarm:*" }
    }
  }
}

resource "aws_kms_key" "this" {
  description             = var.description
  enable_key_rotation     = true
  rotation_period_in_days = var.rotation_period_in_days
  deletion_window_in_days = var.deletion_window_in_days
  multi_region            = false

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [local.account_statement],
      var.allow_cloudwatch_logs ? [local.logs_statement] : [],
      var.allow_cloudwatch_alarms ? [local.alarms_statement] : [],
    )
  })

  tags = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.alias}"
  target_key_id = aws_kms_key.this.key_id
}
