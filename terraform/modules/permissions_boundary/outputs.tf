output "arn" {
  description = "ARN of the boundary policy (permissions_boundary of every workload role; the deploy role's iam:PermissionsBoundary condition)."
  value       = aws_iam_policy.this.arn
}

output "name" {
  description = "Name of the boundary policy."
  value       = aws_iam_policy.this.name
}
