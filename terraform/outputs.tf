output "api_url" {
  description = "URL of the API: the failover DNS name when Route53 is configured, else the primary region's load balancer."
  value = format("%s://%s%s",
    module.primary_nlb.tls ? "https" : "http",
    var.route53_zone_id == null ? module.primary_nlb.dns_name : var.api_domain_name,
    module.primary_nlb.tls ? "" : ":${module.primary_nlb.public_port}",
  )
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
  description = "KMS keys of the hosts (EBS and the hosts' SSM parameters), by region; `alias/<name>-hosts` in both."
  value = {
    (var.primary_region) = module.primary_hosts_key.key_arn
    (var.dr_region)      = module.dr_hosts_key.key_arn
  }
}

output "credential_parameters" {
  description = "SSM names of the credentials Terraform made (values never in an output): passwords (both regions), the CA certificate (both regions), the CA key (primary region, operators only), each host's certificate and key (its region). See README.md, Security."
  value = {
    passwords                      = module.credentials.password_parameters
    replication_password_parameter = var.replication_password_parameter
    ca_certificate                 = module.credentials.ca_certificate_parameter
    ca_key_arn                     = module.credentials.ca_key_parameter_arn
    hosts                          = module.credentials.host_parameters
  }
}

output "internal_ca_certificate" {
  description = "The internal CA certificate (PEM, public): clients outside the hosts verify the database servers with it."
  value       = module.credentials.ca_certificate_pem
}

output "certificate_not_after" {
  description = "End of validity of the internal CA and each host certificate (renew before: README, Credentials)."
  value       = module.credentials.certificate_not_after
}

output "ssm_documents" {
  description = "The SSM Command documents the operate role may send, by region: rolling_restart and restore_drill."
  value = {
    (var.primary_region) = { rolling_restart = module.primary_ssm_documents.rolling_restart_document, restore_drill = module.primary_ssm_documents.restore_drill_document }
    (var.dr_region)      = { rolling_restart = module.dr_ssm_documents.rolling_restart_document, restore_drill = module.dr_ssm_documents.restore_drill_document }
  }
}

output "permissions_boundary_arn" {
  description = "The permissions boundary every workload role carries (and the deploy role requires)."
  value       = module.permissions_boundary.arn
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
  description = "Roles for GitHub Actions through OIDC (deploy: packer + terraform, repository variable AWS_DEPLOY_ROLE_ARN; operate: rolling restarts, restore drills, AWS_OPERATE_ROLE_ARN; drill: the nightly scheduled restore drill only, AWS_DRILL_ROLE_ARN); null without github_repository."
  value = var.github_repository == null ? null : {
    deploy  = module.github_ci[0].deploy_role_arn
    operate = module.github_ci[0].operate_role_arn
    drill   = module.github_ci[0].drill_role_arn
  }
}

output "release_buckets" {
  description = "Release-binary buckets by region, for the deploy workflow's RELEASE_BUCKET_EU_WEST_1 / RELEASE_BUCKET_EU_CENTRAL_1 (rolling restart)."
  value = {
    (var.primary_region) = module.primary_release_bucket.bucket_name
    (var.dr_region)      = module.dr_release_bucket.bucket_name
  }
}

output "alarm_topic_arns" {
  description = "SNS topics the alarms notify, by region (primary, DR, and us-east-1 for the Route53 health checks): subscribe pagers or chat here (alarm_email_endpoints are subscribed already)."
  value = {
    (var.primary_region) = module.primary_alarm_topic.topic_arn
    (var.dr_region)      = module.dr_alarm_topic.topic_arn
    "us-east-1"          = module.global_alarm_topic.topic_arn
  }
}

output "takeover_operator_role_arn" {
  description = "The role a person assumes (with MFA) for dob-promote --fence-init, --takeover and --lift-isolation; null without operator_principal_arns."
  value       = module.takeover_operator.role_arn
}
