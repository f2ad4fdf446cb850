output "instance_id" {
  description = "ID of the instance (the target of `aws ssm start-session --target`)."
  value       = aws_instance.this.id
}

output "private_ip" {
  description = "Private IPv4 address of the host."
  value       = aws_instance.this.private_ip
}

output "security_group_id" {
  description = "ID of the host's security group."
  value       = aws_security_group.this.id
}

output "data_volume_id" {
  description = "ID of the PostgreSQL data volume."
  value       = aws_ebs_volume.data.id
}

output "ami_id" {
  description = "AMI the host was created from."
  value       = aws_instance.this.ami
}

output "units" {
  description = "systemd units user data enables on this host."
  value       = local.units
}
