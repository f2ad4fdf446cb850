output "bucket_name" {
  description = "Name of the backup bucket (DOB_S3_BUCKET in the primary region)."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the backup bucket."
  value       = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key of the backup bucket (DOB_S3_KMS_KEY_ID in the primary region)."
  value       = module.source_key.key_arn
}

output "replica_bucket_name" {
  description = "Name of the replica bucket (DOB_S3_BUCKET in the DR region)."
  value       = aws_s3_bucket.replica.id
}

output "replica_bucket_arn" {
  description = "ARN of the replica bucket."
  value       = aws_s3_bucket.replica.arn
}

output "replica_kms_key_arn" {
  description = "ARN of the KMS key of the replica bucket (DOB_S3_KMS_KEY_ID in the DR region)."
  value       = module.replica_key.key_arn
}

output "replication_role_arn" {
  description = "ARN of the role S3 uses to replicate."
  value       = aws_iam_role.replication.arn
}

output "access_log_bucket_names" {
  description = "Access-log buckets, by region role (source, replica); other buckets of those regions may log there when listed in *_log_sources."
  value = {
    source  = module.source_logs.id
    replica = module.replica_logs.id
  }
}
