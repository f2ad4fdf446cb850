output "arn" {
  description = "ARN of the load balancer."
  value       = aws_lb.this.arn
}

output "dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Route53 zone ID of the load balancer (for alias records)."
  value       = aws_lb.this.zone_id
}

output "security_group_id" {
  description = "Security group of the load balancer; the hosts allow the API port from it only."
  value       = aws_security_group.this.id
}

output "target_group_arn" {
  description = "ARN of the target group (for `aws elbv2 describe-target-health` during rolling restarts)."
  value       = aws_lb_target_group.this.arn
}

output "public_port" {
  description = "Port clients (and Route53 health checks) use: the TLS listener's, or the plain one's when there is no certificate."
  value       = local.listener
}

output "tls" {
  description = "Whether the public listener is TLS."
  value       = local.tls
}

output "drain_seconds" {
  description = "How long a host should keep answering after SIGTERM with /readyz at 503, so the load balancer has marked it unhealthy first (DOB_DRAIN_SECONDS)."
  value       = var.health_check_interval * var.health_check_threshold + 5
}
