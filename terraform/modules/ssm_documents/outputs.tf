output "rolling_restart_document" {
  description = "Name of the rolling-restart Command document."
  value       = aws_ssm_document.rolling_restart.name
}

output "restore_drill_document" {
  description = "Name of the restore-drill Command document."
  value       = aws_ssm_document.restore_drill.name
}

output "document_arns" {
  description = "ARNs of both documents (what the operate role may send)."
  value       = [aws_ssm_document.rolling_restart.arn, aws_ssm_document.restore_drill.arn]
}

output "restore_drill_document_arn" {
  description = "ARN of the restore-drill document (the scheduled drill's role may send only this)."
  value       = aws_ssm_document.restore_drill.arn
}
