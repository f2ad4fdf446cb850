output "id" {
  description = "Name (id) of the bucket."
  value       = aws_s3_bucket.this.id
}

output "arn" {
  description = "ARN of the bucket."
  value       = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "ARN of the bucket's KMS key (what DOB_S3_KMS_KEY_ID names)."
  value       = module.key.key_arn
}

output "access_log_bucket_id" {
  description = "Name (id) of the bucket's access-log bucket, which other_log_sources may log into."
  value       = module.logs.id
}
