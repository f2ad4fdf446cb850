output "bucket_name" {
  description = "Name of the release bucket (RELEASE_BUCKET_<REGION> of the deploy workflow)."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the release bucket."
  value       = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "ARN of the release bucket's KMS key."
  value       = module.key.key_arn
}
