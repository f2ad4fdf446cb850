terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.82"
    }
  }

  # State: use a remote backend with locking in production (see README.md), e.g.
  #
  #   backend "s3" {
  #     bucket       = "my-terraform-state"
  #     key          = "dob/terraform.tfstate"
  #     region       = "eu-west-1"
  #     encrypt      = true
  #     use_lockfile = true
  #   }
  #
  # and pass it with `terraform init -backend-config=...` rather than editing this file.
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
