output "role_arn" {
  description = "ARN of the hosts' IAM role."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the hosts' IAM role."
  value       = aws_iam_role.this.name
}

output "instance_profile_name" {
  description = "Name of the instance profile to give the hosts."
  value       = aws_iam_instance_profile.this.name
}
