# IAM roles that GitHub Actions assumes through OIDC (no long-lived AWS keys in GitHub):
#
#   deploy   packer build + terraform plan/apply. Only the given GitHub environment (whose
#            required reviewers are the manual approval) can assume it. PowerUserAccess
#            (everything but IAM and Organizations) plus IAM limited to roles and instance
#            profiles whose names start with the project's name, never the CI roles
#            themselves. Caveat: it can still write inline policies on the project's host
#            roles, so treat it as administrator of the project's resources; the GitHub
#            environment approval is what guards it. The OIDC provider and these roles are
#            applied by a person (terraform apply -target=module.github_ci), not by CI.
#   operate  rolling restarts and restore drills: SSM Run Command on this project's
#            instances only, and reading target health. Assumable only from the GitHub
#            environment (its required reviewers approve each run): a shell on every
#            host is not something any workflow on main may get by itself.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  oidc_host  = "token.actions.githubusercontent.com"

  provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.this[0].arn : "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.oidc_host}"

  environment_subject = "repo:${var.github_repository}:environment:${var.github_environment}"
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

resource "aws_iam_role_policy_attachment" "deploy_power_user" {
  role       = aws_iam_role.deploy.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/PowerUserAccess"
}

data "aws_iam_policy_document" "deploy_iam" {
  statement {
    sid = "ManageTheProjectsRolesAndProfiles"
    actions = [
      "iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy",
      "iam:TagRole", "iam:UntagRole", "iam:ListRoleTags",
      "iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy", "iam:ListRolePolicies",
      "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole", "iam:PassRole",
      "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:GetInstanceProfile",
      "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
      "iam:TagInstanceProfile", "iam:UntagInstanceProfile",
    ]
    resources = [
      "arn:${local.partition}:iam::${local.account_id}:role/${var.name}-*",
      "arn:${local.partition}:iam::${local.account_id}:instance-profile/${var.name}-*",
    ]
  }

  statement {
    sid       = "AttachOnlyTheManagedPoliciesTheProjectUses"
    actions   = ["iam:AttachRolePolicy", "iam:DetachRolePolicy"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/${var.name}-*"]
    condition {
      test     = "ArnEquals"
      variable = "iam:PolicyARN"
      values   = ["arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    }
  }

  # The CI roles match the name pattern above: they must not be able to widen themselves.
  statement {
    sid       = "NeverTouchTheCiRoles"
    effect    = "Deny"
    actions   = ["iam:*"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/${var.name}-github-*"]
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

  statement {
    sid       = "WithTheShellScriptDocumentOnly"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ssm:*::document/AWS-RunShellScript"]
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
}

resource "aws_iam_role_policy" "operate" {
  name   = "operate-hosts"
  role   = aws_iam_role.operate.id
  policy = data.aws_iam_policy_document.operate.json
}
