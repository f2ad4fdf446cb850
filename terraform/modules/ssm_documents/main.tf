# The SSM Command documents of one region: the only commands the operate role (GitHub
# Actions, modules/github_ci) may send to the hosts, instead of AWS-RunShellScript, which
# would be a root shell on every host. Each runs a fixed script (scripts/); parameters
# are validated by allowedPattern before SSM substitutes them.
#
#   <name>-rolling-restart  install release binaries from this region's release bucket
#                           (presigned URLs, SHA-256 checked), restart dob-api, wait for
#                           /readyz on the admin port (scripts/deploy/rolling-restart.sh)
#   <name>-restore-drill    start dob-restore-drill.service and print its JSON report
#                           (.github/workflows/restore-drill.yml)

data "aws_region" "current" {}

locals {
  bucket_host = replace(var.release_bucket_name, ".", "\\.")
  region      = replace(data.aws_region.current.name, ".", "\\.")

  # NAME SHA256 URL, space separated, for each binary; the URL is a presigned GET of
  # releases/<version>/<NAME> in this region's release bucket, nothing else.
  binary_pattern = "[a-z][a-z0-9-]{0,31} [0-9a-f]{64} https://${local.bucket_host}\\.s3(\\.${local.region})?\\.amazonaws\\.com/releases/[A-Za-z0-9._-]{1,64}/[a-z][a-z0-9-]{0,31}\\?[A-Za-z0-9%&=._~-]+"

  lines = { for script in ["rolling-restart", "restore-drill"] : script => [
    for line in split("\n", trimspace(file("${path.module}/scripts/${script}.sh"))) : line
  ] }
}

resource "aws_ssm_document" "rolling_restart" {
  name            = "${var.name}-rolling-restart"
  document_type   = "Command"
  document_format = "JSON"
  target_type     = "/AWS::EC2::Instance"

  content = jsonencode({
    schemaVersion = "2.2"
    description   = "dob: install release binaries from s3://${var.release_bucket_name} (SHA-256 checked) and restart dob-api, then wait for /readyz"
    parameters = {
      releaseVersion = {
        type           = "String"
        description    = "Release id (the commit): where the binaries are, releases/<id>/"
        allowedPattern = "^[A-Za-z0-9._-]{1,64}$"
      }
      binaries = {
        type           = "String"
        description    = "NAME SHA256 URL for each binary, space separated; URL a presigned GET of releases/<id>/NAME in s3://${var.release_bucket_name}"
        allowedPattern = "^${local.binary_pattern}( ${local.binary_pattern})*$"
      }
      adminPort = {
        type           = "String"
        description    = "dob-api's admin port (/readyz)"
        default        = tostring(var.admin_port)
        allowedPattern = "^[0-9]{2,5}$"
      }
    }
    mainSteps = [{
      action = "aws:runShellScript"
      name   = "install"
      inputs = {
        timeoutSeconds = "900"
        runCommand     = local.lines["rolling-restart"]
      }
    }]
  })

  tags = var.tags
}

resource "aws_ssm_document" "restore_drill" {
  name            = "${var.name}-restore-drill"
  document_type   = "Command"
  document_format = "JSON"
  target_type     = "/AWS::EC2::Instance"

  content = jsonencode({
    schemaVersion = "2.2"
    description   = "dob: run the restore drill now (dob-restore-drill.service) and print its JSON report"
    parameters    = {}
    mainSteps = [{
      action = "aws:runShellScript"
      name   = "drill"
      inputs = {
        timeoutSeconds = "14000"
        runCommand     = local.lines["restore-drill"]
      }
    }]
  })

  tags = var.tags
}
