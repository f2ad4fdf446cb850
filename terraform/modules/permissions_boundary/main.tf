# The permissions boundary of every role Terraform creates for the workload (the hosts'
# roles, S3 replication, VPC flow logs): whatever policy such a role is ever given, it
# cannot go beyond the services the workload uses, cannot touch IAM, and cannot destroy
# a backup or loosen what protects the backup buckets. The deploy role (modules/github_ci)
# may create and change roles only when they carry this boundary, and may not change the
# boundary itself: like the CI roles, a person applies it
# (terraform apply -target=module.permissions_boundary).

locals {
  backup_objects = [for b in var.backup_bucket_arns : "${b}/*"]
  # pgBackRest's repository is the one place a delete marker may be added (its expire);
  # the versions stay, locked. Everything else in the buckets: not even a marker.
  not_repository = flatten([for b in var.backup_bucket_arns : [for p in var.pgbackrest_prefixes : "${b}/${trimsuffix(p, "/")}/*"]])
}

data "aws_iam_policy_document" "this" {
  # The most a workload role may ever do: SSM (Session Manager, Run Command, Parameter
  # Store), S3 and KMS (backups, fence, replication), CloudWatch Logs (flow logs),
  # CloudWatch metrics (the hosts' figures for the alarms), and the few EC2 calls of a
  # takeover's isolation. The roles' own policies narrow
  # this to exact resources.
  statement {
    sid = "WorkloadServicesOnly"
    actions = [
      "ssm:*", "ssmmessages:*", "ec2messages:*",
      "s3:*", "kms:*",
      "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams", "logs:DescribeLogGroups",
      "cloudwatch:PutMetricData",
      # A takeover's isolation of a region's database tier: only the takeover operator
      # role is given them (narrowed to that region, its VPC and its tagged instances).
      "ec2:DescribeNetworkAcls", "ec2:DescribeSubnets", "ec2:DescribeInstances",
      "ec2:ReplaceNetworkAclAssociation", "ec2:StopInstances", "ec2:StartInstances",
      "ec2:CreateTags", "ec2:DeleteTags",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "NeverIam"
    effect    = "Deny"
    actions   = ["iam:*", "sts:AssumeRole", "organizations:*", "account:*"]
    resources = ["*"]
  }

  # Backups end when their lock and the lifecycle say so, never earlier.
  statement {
    sid    = "NeverDestroyBackups"
    effect = "Deny"
    actions = [
      "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
      "s3:BypassGovernanceRetention", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging",
    ]
    resources = local.backup_objects
  }

  statement {
    sid           = "NeverDeleteOutsideTheRepository"
    effect        = "Deny"
    actions       = ["s3:DeleteObject"]
    not_resources = local.not_repository
  }

  statement {
    sid    = "NeverLoosenTheBackupBuckets"
    effect = "Deny"
    actions = [
      "s3:DeleteBucket", "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration",
      "s3:PutBucketVersioning", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
      "s3:PutReplicationConfiguration", "s3:PutBucketAcl", "s3:PutBucketOwnershipControls",
      "s3:PutBucketPublicAccessBlock", "s3:PutEncryptionConfiguration",
    ]
    resources = var.backup_bucket_arns
  }
}

resource "aws_iam_policy" "this" {
  name        = "${var.name}-workload-boundary"
  description = "Permissions boundary of dob's workload roles: no IAM, no destroying backups"
  policy      = data.aws_iam_policy_document.this.json

  tags = var.tags
}
