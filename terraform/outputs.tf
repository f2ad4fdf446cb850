output "api_url" {
  description = "URL of the API: the failover DNS name when Route53 is configured, else the primary region's load balancer."
  value       = var.route53_zone_id == null ? "http://${module.primary_nlb.dns_name}:8080" : "http://${var.api_domain_name}:8080"
}

output "primary_nlb_dns_name" {
  description = "DNS name of the primary region's load balancer."
  value       = module.primary_nlb.dns_name
}

output "dr_nlb_dns_name" {
  description = "DNS name of the DR region's load balancer."
  value       = module.dr_nlb.dns_name
}

output "target_group_arns" {
  description = "Target groups by region role (for `aws elbv2 describe-target-health` during rolling restarts)."
  value = {
    primary = module.primary_nlb.target_group_arn
    dr      = module.dr_nlb.target_group_arn
  }
}

output "instance_ids" {
  description = "Instance IDs of the hosts (targets of `aws ssm start-session`)."
  value = {
    primary = module.primary_region_host["primary"].instance_id
    replica = module.primary_region_host["replica"].instance_id
    dr      = module.dr.instance_id
  }
}

output "private_ips" {
  description = "Private addresses of the hosts (the --primary-url hosts of dob-promote)."
  value = {
    primary = module.primary_region_host["primary"].private_ip
    replica = module.primary_region_host["replica"].private_ip
    dr      = module.dr.private_ip
  }
}

output "backup_bucket" {
  description = "Backup bucket of the primary region and its KMS key."
  value = {
    name        = module.backup_bucket.bucket_name
    kms_key_arn = module.backup_bucket.kms_key_arn
  }
}

output "replica_bucket" {
  description = "Replica bucket of the DR region and its KMS key."
  value = {
    name        = module.backup_bucket.replica_bucket_name
    kms_key_arn = module.backup_bucket.replica_kms_key_arn
  }
}

output "hosts_kms_key_arns" {
  description = "KMS keys of the hosts (EBS and the replication password parameter), by region; `alias/<name>-hosts` in both."
  value = {
    (var.primary_region) = module.primary_hosts_key.key_arn
    (var.dr_region)      = module.dr_hosts_key.key_arn
  }
}

output "replication_password_parameter_arns" {
  description = "The SSM parameters the hosts read the replication password from; create them before the hosts boot (README.md)."
  value       = local.replication_password_parameter_arn
}

output "vpc_ids" {
  description = "VPC IDs by region."
  value = {
    (var.primary_region) = module.primary_network.vpc_id
    (var.dr_region)      = module.dr_network.vpc_id
  }
}

output "vpc_peering_connection_id" {
  description = "ID of the cross-region VPC peering connection."
  value       = module.peering.id

  precondition {
    condition     = cidrhost(var.primary_vpc_cidr, 0) != cidrhost(var.dr_vpc_cidr, 0)
    error_message = "primary_vpc_cidr and dr_vpc_cidr overlap: peered VPCs need distinct /16 blocks."
  }
}

output "host_role_arns" {
  description = "IAM roles of the hosts, by region."
  value = {
    (var.primary_region) = module.primary_host_role.role_arn
    (var.dr_region)      = module.dr_host_role.role_arn
  }
}

output "github_ci_role_arns" {
  description = "Roles for GitHub Actions through OIDC (deploy: packer + terraform; operate: rolling restarts, restore drills); null without github_repository."
  value = var.github_repository == null ? null : {
    deploy  = module.github_ci[0].deploy_role_arn
    operate = module.github_ci[0].operate_role_arn
  }
}

output "release_buckets" {
  description = "Release-binary buckets by region, for the deploy workflow's RELEASE_BUCKET_EU_WEST_1 / RELEASE_BUCKET_EU_CENTRAL_1 (rolling restart)."
  value = {
    (var.primary_region) = module.primary_release_bucket.bucket_name
    (var.dr_region)      = module.dr_release_bucket.bucket_name
  }
}
