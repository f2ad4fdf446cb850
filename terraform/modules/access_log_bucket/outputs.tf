output "id" {
  description = "Name (id) of the access-log bucket, for logging target_bucket."
  value       = aws_s3_bucket.this.id
}

output "arn" {
  description = "ARN of the access-log bucket."
  value       = aws_s3_bucket.this.arn
}
