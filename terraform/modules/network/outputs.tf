output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "IPv4 CIDR block of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "IDs of the private subnets, in the order of `azs`."
  value       = aws_subnet.private[*].id
}

output "private_subnet_cidrs" {
  description = "CIDR blocks of the private subnets, in the order of `azs`."
  value       = aws_subnet.private[*].cidr_block
}

output "public_subnet_ids" {
  description = "IDs of the public subnets, in the order of `azs`."
  value       = aws_subnet.public[*].id
}

output "private_route_table_id" {
  description = "ID of the route table of the private subnets (add peering routes to it)."
  value       = aws_route_table.private.id
}

output "s3_prefix_list_id" {
  description = "ID of the S3 prefix list, for security group egress rules to the S3 gateway endpoint."
  value       = aws_vpc_endpoint.s3.prefix_list_id
}

output "flow_log_group_name" {
  description = "Name of the CloudWatch log group that holds the VPC flow logs."
  value       = aws_cloudwatch_log_group.flow_logs.name
}

output "s3_peer_endpoint_url" {
  description = "HTTPS endpoint of this region's S3 through the interface endpoint, for the peered region's hosts (path-style bucket addressing); null without s3_peer_cidr_blocks."
  value       = length(aws_vpc_endpoint.s3_peer) > 0 ? "https://${replace(aws_vpc_endpoint.s3_peer[0].dns_entry[0].dns_name, "*", "bucket")}" : null
}

output "ec2_peer_endpoint_url" {
  description = "HTTPS endpoint of this region's EC2 API through the interface endpoint, for the peered region's takeover (DOB_PEER_EC2_ENDPOINT there); null without s3_peer_cidr_blocks and fence_group."
  value       = length(aws_vpc_endpoint.ec2_peer) > 0 ? "https://${aws_vpc_endpoint.ec2_peer[0].dns_entry[0].dns_name}" : null
}

output "vpc_arn" {
  description = "ARN of the VPC (the other region's host role may isolate subnets in it)."
  value       = aws_vpc.this.arn
}

output "s3_witness_endpoint_url" {
  description = "HTTPS endpoint of the witness region's S3 through the cross-region interface endpoint (path-style bucket addressing); null without witness_region."
  value       = length(aws_vpc_endpoint.s3_witness) > 0 ? "https://${replace(aws_vpc_endpoint.s3_witness[0].dns_entry[0].dns_name, "*", "bucket")}" : null
}
