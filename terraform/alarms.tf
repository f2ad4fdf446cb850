# Alerts that wake someone: CloudWatch alarms on what the hosts publish (namespace "dob",
# scripts/publish-metrics.sh from dob-metrics.timer every minute, and from the backup and
# restore drill units when they end), on EC2 status checks and on the Route53 health
# checks; every alarm notifies (alarm_actions) and clears (ok_actions) through the SNS
# topic of its own region (modules/alarm_topic; an alarm cannot notify another region's
# topic). scripts/ci/terraform_static.py fails the build when one of these alarms is
# missing or notifies anything else. terraform/README.md, Alerts, lists them.
#
# "Silence means broken": the heartbeat figures (backup age, drill age, WAL archive age,
# replication lag seconds) are published every minute whether or not anything ran, and
# their alarms treat missing data as breaching, so a host, timer or publisher that stops
# reporting alarms as surely as a stale backup.

locals {
  metrics_namespace = "dob" # the host role may publish to this namespace only

  alarm_topics = {
    primary = module.primary_alarm_topic.topic_arn
    dr      = module.dr_alarm_topic.topic_arn
  }

  # The database hosts whose replication lag is watched (each reports its own; a leader
  # reports 0), by region.
  primary_lag_hosts = { for key, host in module.primary_region_host : key => host.instance_id }
  dr_lag_hosts      = { dr = module.dr.instance_id }

  # Every host's EC2 status checks (the witness is an etcd member: it counts too).
  primary_status_hosts = merge(local.primary_lag_hosts, { witness = module.witness.instance_id })

  backup_max_age_seconds      = var.alarm_backup_max_age_hours * 3600
  drill_max_age_seconds       = var.alarm_drill_max_age_hours * 3600
  wal_archive_max_age_seconds = var.alarm_wal_archive_max_age_minutes * 60
}

# --- topics --------------------------------------------------------------------------------

module "primary_alarm_topic" {
  source    = "./modules/alarm_topic"
  providers = { aws = aws.primary }

  name            = var.name
  email_endpoints = var.alarm_email_endpoints
}

module "dr_alarm_topic" {
  source    = "./modules/alarm_topic"
  providers = { aws = aws.dr }

  name            = var.name
  email_endpoints = var.alarm_email_endpoints
}

# Route53's metrics exist in us-east-1 only, so the health-check alarms and their topic do.
module "global_alarm_topic" {
  source    = "./modules/alarm_topic"
  providers = { aws = aws.us_east_1 }

  name            = var.name
  email_endpoints = var.alarm_email_endpoints
}

# --- backups ---------------------------------------------------------------------------------

# Seconds since the newest successful backup: logical (dob-backup's textfile,
# dob_backup_last_success_timestamp_seconds) and physical (pgBackRest: the newest
# backup's stop time in `pgbackrest info`, asked by the Patroni leader). Both Patroni
# members publish what they know; Minimum is the newest backup either made.
resource "aws_cloudwatch_metric_alarm" "backup_age" {
  provider = aws.primary
  for_each = toset(["logical", "physical"])

  alarm_name        = "${var.name}-${var.primary_region}-backup-age-${each.key}"
  alarm_description = "The newest ${each.key} backup is older than ${var.alarm_backup_max_age_hours} h, or no host reports its age (dob-metrics stopped, hosts down). Runbook: terraform/README.md, Alerts."
  namespace         = local.metrics_namespace
  metric_name       = "BackupAgeSeconds"
  dimensions        = { Backup = each.key }
  statistic         = "Minimum"
  period            = 300
  # Two five-minute periods: a missed publish or two is not an incident.
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.backup_max_age_seconds
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alarm_topics.primary]
  ok_actions          = [local.alarm_topics.primary]
}

# --- restore drills ----------------------------------------------------------------------------

# The nightly restore drill of the latest logical backup, on the DR host (its textfile
# dob_restore_drill.prom), and the nightly point-in-time recovery drill on the primary
# region's Patroni leader (dob_pitr_drill.prom). Age: seconds since the last successful
# drill; failed: 1 while the last run failed (the age alarm also fires once it is stale).
resource "aws_cloudwatch_metric_alarm" "restore_drill_age" {
  provider = aws.dr

  alarm_name          = "${var.name}-${var.dr_region}-drill-age-restore"
  alarm_description   = "No successful restore drill (DR host) for ${var.alarm_drill_max_age_hours} h, or the DR host reports nothing. Runbook: terraform/README.md, Alerts."
  namespace           = local.metrics_namespace
  metric_name         = "DrillAgeSeconds"
  dimensions          = { Drill = "restore" }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.drill_max_age_seconds
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alarm_topics.dr]
  ok_actions          = [local.alarm_topics.dr]
}

resource "aws_cloudwatch_metric_alarm" "restore_drill_failed" {
  provider = aws.dr

  alarm_name          = "${var.name}-${var.dr_region}-drill-failed-restore"
  alarm_description   = "The last restore drill (DR host) failed (dob_restore_drill_success 0). See /var/lib/dob/restore-drill.json and the journal of dob-restore-drill.service."
  namespace           = local.metrics_namespace
  metric_name         = "DrillFailed"
  dimensions          = { Drill = "restore" }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  # Silence is the age alarm's to report.
  treat_missing_data = "notBreaching"
  alarm_actions      = [local.alarm_topics.dr]
  ok_actions         = [local.alarm_topics.dr]
}

resource "aws_cloudwatch_metric_alarm" "pitr_drill_age" {
  provider = aws.primary

  alarm_name          = "${var.name}-${var.primary_region}-drill-age-pitr"
  alarm_description   = "No successful point-in-time recovery drill (Patroni leader) for ${var.alarm_drill_max_age_hours} h, or no Patroni member reports it. Runbook: terraform/README.md, Alerts."
  namespace           = local.metrics_namespace
  metric_name         = "DrillAgeSeconds"
  dimensions          = { Drill = "pitr" }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.drill_max_age_seconds
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alarm_topics.primary]
  ok_actions          = [local.alarm_topics.primary]
}

resource "aws_cloudwatch_metric_alarm" "pitr_drill_failed" {
  provider = aws.primary

  alarm_name          = "${var.name}-${var.primary_region}-drill-failed-pitr"
  alarm_description   = "The last point-in-time recovery drill (Patroni leader) failed (dob_restore_pitr_drill_success 0). See /var/lib/dob/pitr-drill.json and the journal of dob-pitr-drill.service on the leader."
  namespace           = local.metrics_namespace
  metric_name         = "DrillFailed"
  dimensions          = { Drill = "pitr" }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [local.alarm_topics.primary]
  ok_actions          = [local.alarm_topics.primary]
}

# --- WAL archive -----------------------------------------------------------------------------

# Published by the Patroni leader: how long the oldest completed WAL segment has been
# waiting for archive-push (pg_ls_archive_statusdir(): the oldest .ready file; 0 when
# nothing waits, so an idle database is not an incident). Not published while
# archive_mode is off: that alarms too.
resource "aws_cloudwatch_metric_alarm" "wal_archive_age" {
  provider = aws.primary

  alarm_name          = "${var.name}-${var.primary_region}-wal-archive-age"
  alarm_description   = "WAL has waited more than ${var.alarm_wal_archive_max_age_minutes} min for the archive (pgBackRest archive-push failing or archive_mode off), or the leader reports nothing. The point-in-time recovery window is closing. Runbook: terraform/README.md, Alerts."
  namespace           = local.metrics_namespace
  metric_name         = "WalArchiveAgeSeconds"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.wal_archive_max_age_seconds
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alarm_topics.primary]
  ok_actions          = [local.alarm_topics.primary]
}

# After a takeover the DR region writes, archives into its own repository (pgbackrest-dr/)
# and backs up (dob-promote --takeover's first full backup, then the pgBackRest timers).
# Only a primary publishes these figures, so while the DR region follows, silence is the
# normal state (notBreaching); once it is the primary, an archive that stalls or a backup
# that grows old alarms in its region. A dead DR primary is the health checks' and the
# instance status alarm's to report.
resource "aws_cloudwatch_metric_alarm" "dr_wal_archive_age" {
  provider = aws.dr

  alarm_name          = "${var.name}-${var.dr_region}-wal-archive-age"
  alarm_description   = "After a takeover: WAL has waited more than ${var.alarm_wal_archive_max_age_minutes} min for the DR region's own archive (pgBackRest archive-push to pgbackrest-dr/ failing). The point-in-time recovery window is closing. Runbook: docs/failover.md, After a takeover."
  namespace           = local.metrics_namespace
  metric_name         = "WalArchiveAgeSeconds"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.wal_archive_max_age_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [local.alarm_topics.dr]
  ok_actions          = [local.alarm_topics.dr]
}

resource "aws_cloudwatch_metric_alarm" "dr_physical_backup_age" {
  provider = aws.dr

  alarm_name          = "${var.name}-${var.dr_region}-backup-age-physical"
  alarm_description   = "After a takeover: the DR region's newest pgBackRest backup is older than ${var.alarm_backup_max_age_hours} h (its first full backup failed, or the timers do not run). Runbook: docs/failover.md, After a takeover."
  namespace           = local.metrics_namespace
  metric_name         = "BackupAgeSeconds"
  dimensions          = { Backup = "physical" }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.backup_max_age_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [local.alarm_topics.dr]
  ok_actions          = [local.alarm_topics.dr]
}

# --- replication lag -------------------------------------------------------------------------

# Each database host reports its own lag (a leader: 0). Seconds: 0 while streaming and
# caught up, else now() - pg_last_xact_replay_timestamp(), so a standby that lost its
# upstream alarms even when nothing is written. Bytes: the upstream's WAL end
# (pg_stat_wal_receiver.latest_end_lsn) minus the replayed position, while streaming (a
# disconnected standby is the seconds alarm's to report).
resource "aws_cloudwatch_metric_alarm" "primary_replication_lag_seconds" {
  provider = aws.primary
  for_each = local.primary_lag_hosts

  alarm_name          = "${var.name}-${var.primary_region}-${each.key}-replication-lag-seconds"
  alarm_description   = "Host ${each.key} (${each.value}) replays more than ${var.alarm_replication_lag_seconds} s behind its upstream, or reports nothing."
  namespace           = local.metrics_namespace
  metric_name         = "ReplicationLagSeconds"
  dimensions          = { InstanceId = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_replication_lag_seconds
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alarm_topics.primary]
  ok_actions          = [local.alarm_topics.primary]
}

resource "aws_cloudwatch_metric_alarm" "primary_replication_lag_bytes" {
  provider = aws.primary
  for_each = local.primary_lag_hosts

  alarm_name          = "${var.name}-${var.primary_region}-${each.key}-replication-lag-bytes"
  alarm_description   = "Host ${each.key} (${each.value}) has more than ${var.alarm_replication_lag_bytes} bytes of its upstream's WAL left to replay."
  namespace           = local.metrics_namespace
  metric_name         = "ReplicationLagBytes"
  dimensions          = { InstanceId = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_replication_lag_bytes
  treat_missing_data  = "notBreaching"
  alarm_actions       = [local.alarm_topics.primary]
  ok_actions          = [local.alarm_topics.primary]
}

resource "aws_cloudwatch_metric_alarm" "dr_replication_lag_seconds" {
  provider = aws.dr
  for_each = local.dr_lag_hosts

  alarm_name          = "${var.name}-${var.dr_region}-${each.key}-replication-lag-seconds"
  alarm_description   = "DR host ${each.key} (${each.value}) replays more than ${var.alarm_replication_lag_seconds} s behind the primary region, or reports nothing."
  namespace           = local.metrics_namespace
  metric_name         = "ReplicationLagSeconds"
  dimensions          = { InstanceId = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_replication_lag_seconds
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alarm_topics.dr]
  ok_actions          = [local.alarm_topics.dr]
}

resource "aws_cloudwatch_metric_alarm" "dr_replication_lag_bytes" {
  provider = aws.dr
  for_each = local.dr_lag_hosts

  alarm_name          = "${var.name}-${var.dr_region}-${each.key}-replication-lag-bytes"
  alarm_description   = "DR host ${each.key} (${each.value}) has more than ${var.alarm_replication_lag_bytes} bytes of the primary region's WAL left to replay (its slot holds at most max_slot_wal_keep_size)."
  namespace           = local.metrics_namespace
  metric_name         = "ReplicationLagBytes"
  dimensions          = { InstanceId = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_replication_lag_bytes
  treat_missing_data  = "notBreaching"
  alarm_actions       = [local.alarm_topics.dr]
  ok_actions          = [local.alarm_topics.dr]
}

# --- EC2 status checks -----------------------------------------------------------------------

# StatusCheckFailed (instance or system check), one-minute data (detailed monitoring is
# on). Missing data is breaching: a stopped host is down too.
resource "aws_cloudwatch_metric_alarm" "primary_instance_status" {
  provider = aws.primary
  for_each = local.primary_status_hosts

  alarm_name          = "${var.name}-${var.primary_region}-${each.key}-status-check"
  alarm_description   = "EC2 status check failing on host ${each.key} (${each.value}), or the instance is stopped."
  namespace           = "AWS/EC2"
  metric_name         = "StatusCheckFailed"
  dimensions          = { InstanceId = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alarm_topics.primary]
  ok_actions          = [local.alarm_topics.primary]
}

resource "aws_cloudwatch_metric_alarm" "dr_instance_status" {
  provider = aws.dr
  for_each = { dr = module.dr.instance_id }

  alarm_name          = "${var.name}-${var.dr_region}-${each.key}-status-check"
  alarm_description   = "EC2 status check failing on DR host ${each.key} (${each.value}), or the instance is stopped."
  namespace           = "AWS/EC2"
  metric_name         = "StatusCheckFailed"
  dimensions          = { InstanceId = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alarm_topics.dr]
  ok_actions          = [local.alarm_topics.dr]
}

# --- Route53 health checks ---------------------------------------------------------------------

# HealthCheckStatus (1 healthy, 0 not) of each failover record's health check, in
# us-east-1 where Route53 publishes it. Only with DNS failover (route53_zone_id).
resource "aws_cloudwatch_metric_alarm" "route53_health_check" {
  provider = aws.us_east_1
  for_each = var.route53_zone_id == null ? {} : {
    (var.primary_region) = aws_route53_health_check.primary[0].id
    (var.dr_region)      = aws_route53_health_check.secondary[0].id
  }

  alarm_name          = "${var.name}-${each.key}-route53-health-check"
  alarm_description   = "Route53's health check of the ${each.key} load balancer's listener fails: DNS fails over away from it (or, for the DR region, there is nowhere left to fail over to)."
  namespace           = "AWS/Route53"
  metric_name         = "HealthCheckStatus"
  dimensions          = { HealthCheckId = each.value }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [module.global_alarm_topic.topic_arn]
  ok_actions          = [module.global_alarm_topic.topic_arn]
}
