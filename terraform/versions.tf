terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.82"
    }
    # Passwords (modules/credentials).
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    # The internal CA and the database hosts' certificates (modules/credentials).
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
  }

  # State: a remote backend with locking in production. Uncomment, and give the settings at
  # init: terraform init -backend-config=backend.hcl (see backend.hcl.example).
  #
  # backend "s3" {}
}

# The primary region: the writable database, its hot standby and the backups.
provider "aws" {
  alias  = "primary"
  region = var.primary_region

  default_tags {
    tags = local.tags
  }
}

# The disaster-recovery region: a cascading replica, its own NLB and the replica bucket.
provider "aws" {
  alias  = "dr"
  region = var.dr_region

  default_tags {
    tags = local.tags
  }
}

# The fence's witness region: one small bucket holding the fence records' third copy, so
# that a partition between the two regions cannot outvote the fence (docs/design.md).
provider "aws" {
  alias  = "witness"
  region = var.witness_region

  default_tags {
    tags = local.tags
  }
}

# us-east-1: where Route53 publishes its health checks' metrics, so the alarms on them
# (alarms.tf) and the topic they notify live there. Nothing else is made in this region.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"

  default_tags {
    tags = local.tags
  }
}
