# The SNS topic the CloudWatch alarms of one region notify (an alarm can only notify a
# topic of its own region: the root module makes one in each region that has alarms),
# encrypted with a customer-managed key of that region that CloudWatch alarms may use,
# a topic policy that lets only this account's alarms publish and refuses plaintext, and
# an email subscription per address (each address must confirm it: AWS sends the link).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

module "key" {
  source = "../kms_key"

  alias                   = "${var.name}-alarms"
  description             = "dob alarm notifications in ${data.aws_region.current.name}: the SNS topic ${var.name}-alarms"
  allow_cloudwatch_alarms = true
  tags                    = var.tags
}

resource "aws_sns_topic" "this" {
  name              = "${var.name}-alarms"
  display_name      = "dob alarms"
  kms_master_key_id = module.key.key_arn

  tags = var.tags
}

data "aws_iam_policy_document" "topic" {
  # The account administers the topic through IAM, as with the keys.
  statement {
    sid = "AccountManagesTheTopic"
    actions = [
      "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:AddPermission", "sns:RemovePermission",
      "sns:DeleteTopic", "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:Publish",
    ]
    resources = [aws_sns_topic.this.arn]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch publishes an alarm's state changes; only this account's alarms (confused
  # deputy).
  statement {
    sid       = "ThisAccountsAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.this.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${data.aws_region.current.name}:${local.account_id}:alarm:*"]
    }
  }

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.this.arn]
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
}

resource "aws_sns_topic_policy" "this" {
  arn    = aws_sns_topic.this.arn
  policy = data.aws_iam_policy_document.topic.json
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.email_endpoints)

  topic_arn = aws_sns_topic.this.arn
  protocol  = "email"
  endpoint  = each.value
}
