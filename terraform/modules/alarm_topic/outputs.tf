output "topic_arn" {
  description = "ARN of the alarm topic (the alarm_actions and ok_actions of this region's alarms)."
  value       = aws_sns_topic.this.arn
}

output "kms_key_arn" {
  description = "ARN of the topic's KMS key."
  value       = module.key.key_arn
}
