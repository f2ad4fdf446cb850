output "deploy_role_arn" {
  description = "Role for packer build and terraform plan/apply (`role-to-assume` of aws-actions/configure-aws-credentials)."
  value       = aws_iam_role.deploy.arn
}

output "operate_role_arn" {
  description = "Role for rolling restarts and restore drills through SSM."
  value       = aws_iam_role.operate.arn
}

output "drill_role_arn" {
  description = "Role for the scheduled restore drill (repository variable AWS_DRILL_ROLE_ARN): sends the restore-drill document, nothing else."
  value       = aws_iam_role.drill.arn
}
