# The dob host image: Debian 12 + PostgreSQL 15 + the dob binaries, helper scripts and
# systemd units, configured at boot by user data (/etc/dob/dob.env). Build from the
# repository root:
#
#   cargo build --release --locked
#   packer/provision.sh --stage-binaries Cargo.toml target/release dist/bin
#   packer init packer/ && packer build -var version=$(git rev-parse --short HEAD) packer/
#
# The provisioning itself is packer/provision.sh (CI runs it in a debootstrap chroot).

packer {
  required_version = ">= 1.9.0"
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

locals {
  timestamp = formatdate("YYYYMMDDhhmmss", timestamp())
  ami_name  = "dob-${var.version}-${local.timestamp}"
  # Where the file provisioners put everything; provision.sh --source reads this layout.
  stage = "/tmp/dob-provision"
  tags = {
    Name        = local.ami_name
    Project     = "dob"
    Version     = var.version
    BaseOS      = "debian-12"
    Postgres    = "15"
    BuiltBy     = "packer"
    SourceAMI   = "{{ .SourceAMI }}"
    SourceImage = "{{ .SourceAMIName }}"
  }
}

source "amazon-ebs" "dob" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id != "" ? var.subnet_id : null
  ssh_username  = "admin"
  # Packer reaches the build instance over SSH with a temporary key pair and a temporary
  # security group limited to the builder's address; hosts themselves have no SSH.
  temporary_security_group_source_public_ip = true

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["136693071363"] # Debian's official AWS account
    most_recent = true
  }

  # IMDSv2 only, on the build instance and (imds_support) on instances from the AMI.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  imds_support = "v2.0"

  ami_name        = local.ami_name
  ami_description = "dob host: Debian 12, PostgreSQL 15, dob ${var.version}"
  ami_regions     = var.copy_regions
  encrypt_boot    = true
  kms_key_id      = var.kms_key_id != "" ? var.kms_key_id : null
  region_kms_key_ids = var.copy_kms_key_ids

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 8
    volume_type           = "gp3"
    encrypted             = true
    delete_on_termination = true
  }

  tags          = local.tags
  snapshot_tags = local.tags
  run_tags      = { Name = "packer-${local.ami_name}", Project = "dob" }
}

build {
  name    = "dob"
  sources = ["source.amazon-ebs.dob"]

  provisioner "shell" {
    inline = ["mkdir -p ${local.stage}/bin ${local.stage}/lib ${local.stage}/systemd ${local.stage}/patroni"]
  }

  # The layout provision.sh --source expects (see its --help).
  provisioner "file" {
    source      = "Cargo.toml"
    destination = "${local.stage}/Cargo.toml"
  }
  # Every [[bin]] of Cargo.toml; provision.sh refuses the image if one is missing.
  provisioner "file" {
    source      = "${var.bin_dir}/"
    destination = "${local.stage}/bin"
  }
  provisioner "file" {
    sources = [
      "scripts/role-setup.sh",
      "scripts/pg-is-primary.sh",
      "scripts/make-replica.sh",
      "scripts/primary-allow-replica.sh",
      "scripts/patroni-config.sh",
      "scripts/publish-metrics.sh",
    ]
    destination = "${local.stage}/lib/"
  }
  provisioner "file" {
    source      = "systemd/"
    destination = "${local.stage}/systemd"
  }
  # Patroni's installer and its hash-pinned requirements.
  provisioner "file" {
    source      = "packer/patroni/"
    destination = "${local.stage}/patroni"
  }
  provisioner "file" {
    sources     = ["packer/provision.sh", "packer/dob.env.example"]
    destination = "${local.stage}/"
  }

  provisioner "shell" {
    inline = [
      "sudo chmod 0755 ${local.stage}/provision.sh",
      "sudo ${local.stage}/provision.sh --source ${local.stage}",
      "sudo rm -rf ${local.stage}",
      # No host keys, machine id or cloud-init state baked in: each host makes its own.
      "sudo cloud-init clean --logs --seed",
      "sudo truncate -s 0 /etc/machine-id",
    ]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      version = var.version
    }
  }
}
