output "bucket_name" {
  description = "Name of the backup bucket (DOB_S3_BUCKET in the primary region)."
  value       = module.source.id
}

output "bucket_arn" {
  description = "ARN of the backup bucket."
  value       = module.source.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key of the backup bucket (DOB_S3_KMS_KEY_ID in the primary region)."
  value       = module.source.kms_key_arn
}

output "replica_bucket_name" {
  description = "Name of the replica bucket (DOB_S3_BUCKET in the DR region)."
  value       = module.replica.id
}

output "replica_bucket_arn" {
  description = "ARN of the replica bucket."
  value       = module.replica.arn
}

output "replica_kms_key_arn" {
  description = "ARN of the KMS key of the replica bucket (DOB_S3_KMS_KEY_ID in the DR region)."
  value       = module.replica.kms_key_arn
}

output "replication_role_arn" {
  description = "ARN of the role S3 uses to replicate."
  value       = aws_iam_role.replication.arn
}

output "access_log_bucket_names" {
  description = "Access-log buckets, by region role (source, replica); other buckets of those regions may log there when listed in *_log_sources."
  value = {
    source  = module.source.access_log_bucket_id
    replica = module.replica.access_log_bucket_id
  }
}
