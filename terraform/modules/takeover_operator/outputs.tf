output "role_arn" {
  description = "ARN of the takeover operator role; null without operator_principal_arns."
  value       = length(aws_iam_role.this) > 0 ? aws_iam_role.this[0].arn : null
}
