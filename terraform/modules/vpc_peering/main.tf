# Cross-region VPC peering with routes on both sides: the path streaming replication takes
# from the primary region to the DR replica (and back, after a failover). Traffic stays on
# the AWS backbone, encrypted between regions by AWS.

data "aws_region" "accepter" {
  provider = aws.accepter
}

data "aws_caller_identity" "accepter" {
  provider = aws.accepter
}

resource "aws_vpc_peering_connection" "this" {
  provider = aws.requester

  vpc_id        = var.requester_vpc_id
  peer_vpc_id   = var.accepter_vpc_id
  peer_region   = data.aws_region.accepter.name
  peer_owner_id = data.aws_caller_identity.accepter.account_id
  auto_accept   = false

  tags = merge(var.tags, { Name = var.name, Side = "requester" })
}

resource "aws_vpc_peering_connection_accepter" "this" {
  provider = aws.accepter

  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
  auto_accept               = true

  tags = merge(var.tags, { Name = var.name, Side = "accepter" })
}

resource "aws_route" "requester" {
  provider = aws.requester
  # count, not for_each: the route table IDs are only known after apply.
  count = length(var.requester_route_table_ids)

  route_table_id            = var.requester_route_table_ids[count.index]
  destination_cidr_block    = var.accepter_cidr_block
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id

  depends_on = [aws_vpc_peering_connection_accepter.this]
}

resource "aws_route" "accepter" {
  provider = aws.accepter
  count    = length(var.accepter_route_table_ids)

  route_table_id            = var.accepter_route_table_ids[count.index]
  destination_cidr_block    = var.requester_cidr_block
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id

  depends_on = [aws_vpc_peering_connection_accepter.this]
}
