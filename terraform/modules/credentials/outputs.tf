# No output carries a password or a private key: hosts read them from SSM, operators from
# SSM (the CA key) or the state.

output "ca_certificate_pem" {
  description = "The internal CA certificate (public): what clients verify the database hosts against."
  value       = tls_self_signed_cert.ca.cert_pem
}

output "ca_certificate_parameter" {
  description = "SSM name of the CA certificate (String, both regions): DOB_TLS_CA_PARAMETER."
  value       = aws_ssm_parameter.primary_certificate["ca"].name
}

output "ca_key_parameter_arn" {
  description = "ARN of the CA private key parameter (SecureString under the operators' key, primary region)."
  value       = aws_ssm_parameter.ca_key.arn
}

output "host_parameters" {
  description = "SSM names of each host's certificate and key, by host: { cert, key } (DOB_TLS_CERT_PARAMETER, DOB_TLS_KEY_PARAMETER)."
  value       = local.host_parameters
}

output "password_parameters" {
  description = "SSM names of the passwords (the same in both regions), by password."
  value       = { for name, p in aws_ssm_parameter.primary_password : name => p.name }
}

output "parameter_arns" {
  description = "ARNs of every parameter the hosts of a region read, by region role (primary, dr): the passwords, the CA certificate, that region's host certificates and keys."
  value = {
    primary = concat(
      [for p in aws_ssm_parameter.primary_password : p.arn],
      [aws_ssm_parameter.primary_replication_password.arn],
      [for p in aws_ssm_parameter.primary_certificate : p.arn],
      [for p in aws_ssm_parameter.primary_host_key : p.arn],
    )
    dr = concat(
      [for p in aws_ssm_parameter.dr_password : p.arn],
      [aws_ssm_parameter.dr_replication_password.arn],
      [for p in aws_ssm_parameter.dr_certificate : p.arn],
      [for p in aws_ssm_parameter.dr_host_key : p.arn],
    )
  }
}

output "certificate_not_after" {
  description = "End of validity of each host certificate and of the CA (RFC 3339), for renewal alerts."
  value = merge(
    { ca = tls_self_signed_cert.ca.validity_end_time },
    { for host, c in tls_locally_signed_cert.host : host => c.validity_end_time },
  )
}
