# IAM roles that GitHub Actions assumes through OIDC (no long-lived AWS keys in GitHub).
# Both only from the given GitHub environment, which must have required reviewers: that
# approval is what guards every run (Settings > Environments > production > Required
# reviewers; without them any workflow on the branch could assume the roles).
#
#   deploy   packer build + terraform plan/apply. An explicit policy of the services this
#            project manages (EC2, ELB, S3 on the project's buckets, KMS keys tagged with
#            the project, SSM parameters under its prefixes and its documents, Route53,
#            CloudWatch Logs of its flow logs, ACM read, its CloudWatch alarms and SNS
#            alarm topics), in the project's regions (and us-east-1: Route53). IAM
#            only on `<name>-*` roles, policies and instance profiles, and a role may be
#            created or given a policy only when it carries the permissions boundary
#            (modules/permissions_boundary: no IAM, no destroying backups). It cannot
#            change the boundary or the CI roles, and cannot delete backups. No
#            ssm:SendCommand: it never gets a shell on a host. The OIDC provider, these
#            roles and the boundary are applied by a person
#            (terraform apply -target=module.github_ci -target=module.permissions_boundary).
#   drill    the nightly scheduled restore drill (.github/workflows/restore-drill.yml on
#            schedule): from its own environment (drill_environment, without reviewers:
#            a schedule cannot wait for one), and all it can do is send the restore-drill
#            document to the project's instances and read the result.
#   operate  rolling restarts and restore drills: ssm:SendCommand with the project's own
#            Command documents only (modules/ssm_documents: fixed scripts, validated
#            parameters; never AWS-RunShellScript) on the project's instances, release
#            uploads and presigned downloads in the release buckets, and taking targets
#            out of and back into the project's target groups.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  oidc_host  = "token.actions.githubusercontent.com"

  provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.this[0].arn : "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.oidc_host}"

  environment_subject = "repo:${var.github_repository}:environment:${var.github_environment}"
  drill_subject       = "repo:${var.github_repository}:environment:${var.drill_environment}"
}

resource "aws_iam_openid_connect_provider" "this" {
  count = var.create_oidc_provider ? 1 : 0

  url            = "https://${local.oidc_host}"
  client_id_list = ["sts.amazonaws.com"]

  tags = var.tags
}

data "aws_iam_policy_document" "deploy_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = [local.environment_subject]
    }
  }
}

data "aws_iam_policy_document" "operate_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = [local.environment_subject]
    }
  }
}

# --- deploy ------------------------------------------------------------------------------

resource "aws_iam_role" "deploy" {
  name                 = "${var.name}-github-deploy"
  description          = "GitHub Actions (${var.github_repository}, environment ${var.github_environment}): packer build, terraform apply"
  assume_role_policy   = data.aws_iam_policy_document.deploy_trust.json
  max_session_duration = 3600

  tags = var.tags
}

locals {
  regions     = var.regions
  bucket_arns = [for b in var.bucket_names : "arn:${local.partition}:s3:::${b}"]
  object_arns = [for b in var.bucket_names : "arn:${local.partition}:s3:::${b}/*"]
  role_arn    = "arn:${local.partition}:iam::${local.account_id}:role/${var.name}-*"
  ci_role_arn = "arn:${local.partition}:iam::${local.account_id}:role/${var.name}-github-*"
  profile_arn = "arn:${local.partition}:iam::${local.account_id}:instance-profile/${var.name}-*"
  policy_arn  = "arn:${local.partition}:iam::${local.account_id}:policy/${var.name}-*"
  parameter_arns = [
    for p in var.ssm_parameter_prefixes : "arn:${local.partition}:ssm:*:${local.account_id}:parameter/${trimsuffix(trimprefix(p, "/"), "/")}*"
  ]
}

# What terraform plan/apply and packer build need here, and no more services than that.
data "aws_iam_policy_document" "deploy" {
  # EC2 (VPCs, subnets, endpoints, peering, security groups, instances, volumes, flow
  # logs; Packer's build instance, key pair, security group, AMI and snapshots) and the
  # load balancers, in the project's regions only.
  statement {
    sid     = "ComputeAndNetworkInTheProjectsRegions"
    actions = ["ec2:*", "elasticloadbalancing:*"]
    # This account's resources, and the public images and snapshots Packer starts from.
    resources = [
      "arn:${local.partition}:ec2:*:${local.account_id}:*",
      "arn:${local.partition}:ec2:*::image/*",
      "arn:${local.partition}:ec2:*::snapshot/*",
      "arn:${local.partition}:elasticloadbalancing:*:${local.account_id}:*",
    ]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = local.regions
    }
  }

  # Describe calls and these creations have no resource-level permissions.
  statement {
    sid = "DescribeAndList"
    actions = [
      "ec2:Describe*", "elasticloadbalancing:Describe*", "s3:ListAllMyBuckets",
      "kms:ListAliases", "kms:ListKeys", "ssm:DescribeParameters", "ssm:ListDocuments",
      "logs:DescribeLogGroups", "route53:CreateHealthCheck", "route53:ListHealthChecks",
      "acm:ListCertificates",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = concat(local.regions, ["us-east-1"]) # Route53 answers from us-east-1.
    }
  }

  statement {
    sid       = "TheProjectsBuckets"
    actions   = ["s3:*"]
    resources = concat(local.bucket_arns, local.object_arns)
  }

  # Terraform manages the backup buckets' settings but never their contents: backups end
  # by lock and lifecycle only.
  statement {
    sid    = "NeverDestroyBackups"
    effect = "Deny"
    actions = [
      "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
      "s3:BypassGovernanceRetention",
    ]
    resources = [for b in var.backup_bucket_arns : "${b}/*"]
  }

  # The state bucket (backend.hcl), when it is named.
  dynamic "statement" {
    for_each = var.terraform_state_bucket == null ? [] : [1]
    content {
      sid     = "TerraformState"
      actions = ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
      resources = [
        "arn:${local.partition}:s3:::${var.terraform_state_bucket}",
        "arn:${local.partition}:s3:::${var.terraform_state_bucket}/*",
      ]
    }
  }

  # New keys carry the Project tag (default_tags), and only such keys are managed.
  statement {
    sid       = "CreateProjectKeys"
    actions   = ["kms:CreateKey"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/Project"
      values   = [var.project_tag]
    }
  }

  statement {
    sid       = "ManageProjectKeys"
    actions   = ["kms:*"]
    resources = ["arn:${local.partition}:kms:*:${local.account_id}:key/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = [var.project_tag]
    }
  }

  statement {
    sid       = "TagNewProjectKeys"
    actions   = ["kms:TagResource"]
    resources = ["arn:${local.partition}:kms:*:${local.account_id}:key/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/Project"
      values   = [var.project_tag]
    }
  }

  statement {
    sid = "KeyAliases"
    actions = [
      "kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias", "kms:DescribeKey",
    ]
    resources = [
      "arn:${local.partition}:kms:*:${local.account_id}:alias/${var.name}-*",
      "arn:${local.partition}:kms:*:${local.account_id}:key/*",
    ]
  }

  # Packer's encrypted AMI copies use the EBS keys through EC2 only.
  statement {
    sid       = "EbsKeysThroughEc2"
    actions   = ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
    resources = ["arn:${local.partition}:kms:*:${local.account_id}:key/*"]
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = [for r in local.regions : "ec2.${r}.amazonaws.com"]
    }
  }

  statement {
    sid       = "TheProjectsParametersAndDocuments"
    actions   = ["ssm:*"]
    resources = concat(local.parameter_arns, ["arn:${local.partition}:ssm:*:${local.account_id}:document/${var.name}-*"])
  }

  statement {
    sid     = "FlowLogGroups"
    actions = ["logs:*"]
    resources = [
      "arn:${local.partition}:logs:*:${local.account_id}:log-group:/vpc/${var.name}-*",
      "arn:${local.partition}:logs:*:${local.account_id}:log-group:/vpc/${var.name}-*:*",
    ]
  }

  # Records only in the given zone.
  statement {
    sid = "Route53HealthChecks"
    actions = [
      "route53:DeleteHealthCheck", "route53:GetHealthCheck", "route53:UpdateHealthCheck",
      "route53:ChangeTagsForResource", "route53:ListTagsForResource", "route53:GetChange",
    ]
    resources = ["arn:${local.partition}:route53:::healthcheck/*", "arn:${local.partition}:route53:::change/*"]
  }

  dynamic "statement" {
    for_each = var.route53_zone_id == null ? [] : [1]
    content {
      sid       = "Route53Records"
      actions   = ["route53:GetHostedZone", "route53:ListResourceRecordSets", "route53:ChangeResourceRecordSets"]
      resources = ["arn:${local.partition}:route53:::hostedzone/${var.route53_zone_id}"]
    }
  }

  # The alarms (terraform/alarms.tf) and the SNS topics they notify, named <name>-*, in
  # the project's regions and us-east-1 (Route53's metrics live there).
  statement {
    sid = "TheProjectsAlarms"
    actions = [
      "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms",
      "cloudwatch:ListTagsForResource", "cloudwatch:TagResource", "cloudwatch:UntagResource",
    ]
    resources = ["arn:${local.partition}:cloudwatch:*:${local.account_id}:alarm:${var.name}-*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = concat(local.regions, ["us-east-1"])
    }
  }

  statement {
    sid       = "TheProjectsAlarmTopics"
    actions   = ["sns:*"]
    resources = ["arn:${local.partition}:sns:*:${local.account_id}:${var.name}-*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = concat(local.regions, ["us-east-1"])
    }
  }

  statement {
    sid       = "ReadCertificates"
    actions   = ["acm:DescribeCertificate"]
    resources = ["arn:${local.partition}:acm:*:${local.account_id}:certificate/*"]
  }
}

resource "aws_iam_role_policy" "deploy" {
  name   = "manage-project-resources"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy.json
}

data "aws_iam_policy_document" "deploy_iam" {
  statement {
    sid = "ReadTheProjectsIam"
    actions = [
      "iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole", "iam:ListRoleTags", "iam:GetInstanceProfile",
      "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions", "iam:ListPolicyTags",
      "iam:GetOpenIDConnectProvider",
    ]
    resources = [
      local.role_arn, local.profile_arn, local.policy_arn,
      "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.oidc_host}",
    ]
  }

  # A role may be created, given an inline or a managed policy, or have its boundary set,
  # only with the project's boundary on it.
  statement {
    sid = "BoundedRolesOnly"
    actions = [
      "iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
      "iam:PutRolePermissionsBoundary",
    ]
    resources = [local.role_arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [var.permissions_boundary_arn]
    }
  }

  statement {
    sid       = "AttachOnlyTheManagedPoliciesTheProjectUses"
    effect    = "Deny"
    actions   = ["iam:AttachRolePolicy", "iam:DetachRolePolicy"]
    resources = [local.role_arn]
    condition {
      test     = "ArnNotEquals"
      variable = "iam:PolicyARN"
      values   = ["arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    }
  }

  statement {
    sid = "ManageTheProjectsRolesAndProfiles"
    actions = [
      "iam:DeleteRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRoleDescription",
      "iam:TagRole", "iam:UntagRole", "iam:DeleteRolePolicy",
      "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile",
      "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
      "iam:TagInstanceProfile", "iam:UntagInstanceProfile",
    ]
    resources = [local.role_arn, local.profile_arn]
  }

  # Roles go to the services that use them, nothing else.
  statement {
    sid       = "PassTheProjectsRoles"
    actions   = ["iam:PassRole"]
    resources = [local.role_arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com", "s3.amazonaws.com", "vpc-flow-logs.amazonaws.com"]
    }
  }

  # Neither the CI roles nor the boundary: they must not be able to widen themselves.
  statement {
    sid       = "NeverWidenTheCiRolesOrTheBoundary"
    effect    = "Deny"
    actions   = ["iam:Create*", "iam:Delete*", "iam:Put*", "iam:Update*", "iam:Attach*", "iam:Detach*", "iam:Tag*", "iam:Untag*", "iam:SetDefaultPolicyVersion", "iam:PassRole"]
    resources = [local.ci_role_arn, var.permissions_boundary_arn]
  }

  statement {
    sid       = "NeverDropABoundary"
    effect    = "Deny"
    actions   = ["iam:DeleteRolePermissionsBoundary"]
    resources = ["*"]
  }

  statement {
    sid       = "ServiceLinkedRolesOfTheServicesUsed"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/*"]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["elasticloadbalancing.amazonaws.com", "ssm.amazonaws.com", "ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "deploy_iam" {
  name   = "manage-project-iam"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy_iam.json
}

# --- operate -----------------------------------------------------------------------------

resource "aws_iam_role" "operate" {
  name                 = "${var.name}-github-operate"
  description          = "GitHub Actions (${var.github_repository}): rolling restarts and restore drills through SSM"
  assume_role_policy   = data.aws_iam_policy_document.operate_trust.json
  max_session_duration = 3600

  tags = var.tags
}

data "aws_iam_policy_document" "operate" {
  statement {
    sid       = "RunCommandsOnTheProjectsInstancesOnly"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/Project"
      values   = [var.project_tag]
    }
  }

  # The project's Command documents only: fixed scripts with validated parameters, never
  # AWS-RunShellScript (a root shell on every host).
  statement {
    sid       = "WithTheProjectsDocumentsOnly"
    actions   = ["ssm:SendCommand"]
    resources = var.ssm_document_arns
  }

  statement {
    sid = "FollowCommandsAndTargets"
    # These actions have no resource-level permissions.
    actions = [
      "ssm:GetCommandInvocation", "ssm:ListCommandInvocations", "ssm:ListCommands",
      "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTargetGroups",
      "ec2:DescribeInstances",
    ]
    resources = ["*"]
  }

  # Rolling restarts: a host leaves its target group and comes back.
  statement {
    sid       = "TheProjectsTargetGroups"
    actions   = ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]
    resources = ["arn:${local.partition}:elasticloadbalancing:*:${local.account_id}:targetgroup/${var.name}-*/*"]
  }

  # Release binaries: uploaded here, fetched by the hosts through URLs this role presigns.
  statement {
    sid       = "Releases"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [for b in var.release_bucket_arns : "${b}/releases/*"]
  }

  statement {
    sid       = "ReleaseKeys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = var.release_kms_key_arns
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = ["s3.*.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "operate" {
  name   = "operate-hosts"
  role   = aws_iam_role.operate.id
  policy = data.aws_iam_policy_document.operate.json
}

# --- drill -------------------------------------------------------------------------------

data "aws_iam_policy_document" "drill_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = [local.drill_subject]
    }
  }
}

resource "aws_iam_role" "drill" {
  name                 = "${var.name}-github-drill"
  description          = "GitHub Actions (${var.github_repository}, environment ${var.drill_environment}): the scheduled restore drill through SSM, nothing else"
  assume_role_policy   = data.aws_iam_policy_document.drill_trust.json
  max_session_duration = 3600

  tags = var.tags
}

data "aws_iam_policy_document" "drill" {
  statement {
    sid       = "OnTheProjectsInstancesOnly"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/Project"
      values   = [var.project_tag]
    }
  }

  statement {
    sid       = "TheRestoreDrillDocumentOnly"
    actions   = ["ssm:SendCommand"]
    resources = var.drill_document_arns
  }

  statement {
    sid = "FollowTheCommandAndFindTheHost"
    # These actions have no resource-level permissions.
    actions   = ["ssm:GetCommandInvocation", "ec2:DescribeInstances"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "drill" {
  name   = "restore-drill"
  role   = aws_iam_role.drill.id
  policy = data.aws_iam_policy_document.drill.json
}
