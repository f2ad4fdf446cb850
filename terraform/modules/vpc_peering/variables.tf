variable "name" {
  description = "Name tag of the peering connection."
  type        = string
}

variable "requester_vpc_id" {
  description = "VPC that requests the peering (provider `aws.requester`)."
  type        = string
}

variable "requester_cidr_block" {
  description = "CIDR block of the requester VPC (routed from the accepter side)."
  type        = string
}

variable "requester_route_table_ids" {
  description = "Route tables of the requester VPC that get a route to the accepter VPC."
  type        = list(string)
}

variable "accepter_vpc_id" {
  description = "VPC that accepts the peering (provider `aws.accepter`, may be another region)."
  type        = string
}

variable "accepter_cidr_block" {
  description = "CIDR block of the accepter VPC (routed from the requester side). Must not overlap the requester's."
  type        = string
}

variable "accepter_route_table_ids" {
  description = "Route tables of the accepter VPC that get a route to the requester VPC."
  type        = list(string)
}

variable "tags" {
  description = "Tags for the peering connection."
  type        = map(string)
  default     = {}
}
