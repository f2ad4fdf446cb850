# Inputs of the dob AMI build. Every one has a default that builds the production image;
# CI overrides `version` (the commit) so each image is traceable to its source.

variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "Region the build instance runs in and the AMI is registered in first."
}

variable "copy_regions" {
  type        = list(string)
  default     = ["eu-central-1"]
  description = "Regions the finished AMI is copied to (the DR region)."
}

variable "instance_type" {
  type        = string
  default     = "t3.small"
  description = "Instance type of the temporary build instance."
}

variable "version" {
  type        = string
  default     = "dev"
  description = "What the image contains, e.g. the git commit; part of the AMI name and tags."
}

variable "bin_dir" {
  type        = string
  default     = "dist/bin"
  description = "Directory holding exactly the release binaries, one per [[bin]] target of Cargo.toml (staged by `packer/provision.sh --stage-binaries`), relative to the repository root."
}

variable "kms_key_id" {
  type        = string
  default     = ""
  description = "KMS key for the AMI's EBS snapshots in the build region (empty: the account's default EBS key)."
}

variable "copy_kms_key_ids" {
  type        = map(string)
  default     = {}
  description = "KMS key per copy region for the copied snapshots (a region left out uses its default EBS key)."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet for the build instance (empty: the default VPC). It needs outbound HTTPS to the Debian mirrors."
}
