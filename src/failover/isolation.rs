//! The takeover's own fence on the old region, through that region's EC2 API: defence
//! in depth behind the epoch and the lease, for a host whose `dob-api` or PostgreSQL
//! does not behave as they assume.
//!
//! Terraform tags what belongs to a region's database tier with `dob:fence-group =
//! <group>` (its database subnets and hosts) and creates, in the same VPC, the isolation
//! network ACL, tagged `dob:fence-acl = <group>`: it denies everything but HTTPS coming in
//! (the other region reaching the interface endpoints that live in those subnets: S3 for
//! the fence records, EC2 for lifting the isolation) and the replies going out
//! ([`isolates`]). Isolating:
//!
//! 1. every subnet of the group is associated with that isolation ACL
//!    (`ReplaceNetworkAclAssociation`). A network ACL is stateless, so this also cuts
//!    connections already open, which a security-group change leaves up. The ACL the
//!    subnet had is first recorded on the subnet (tag `dob:isolated-from-acl`);
//! 2. every running instance of the group is tagged `dob:stopped-by-takeover` and
//!    stopped (`StopInstances`, forced: a stalled host may not shut down cleanly).
//!
//! `dob-promote --lift-isolation`, run from the writing region once the old one is to
//! follow it, undoes both from those tags. Everything is read first ([`inventory`]) and
//! decided by pure functions ([`plan`], [`isolates`]); a dry run stops after the plan.

use crate::ec2::{filter_params, list_params, Ec2, Node};
use crate::{Error, Result};
use s3::creds::Credentials;
use serde::Serialize;

/// On subnets and instances: the group they are isolated with.
pub const GROUP_TAG: &str = "dob:fence-group";
/// On the group's isolation network ACL.
pub const ACL_TAG: &str = "dob:fence-acl";
/// On an isolated subnet: the network ACL it had, which lifting restores.
pub const PREVIOUS_ACL_TAG: &str = "dob:isolated-from-acl";
/// On an instance a takeover stopped (value: the epoch): lifting starts only these.
pub const STOPPED_TAG: &str = "dob:stopped-by-takeover";

/// `DOB_PEER_REGION`, `DOB_PEER_FENCE_GROUP`, `DOB_PEER_EC2_ENDPOINT`: the other
/// region's EC2 API and the group of its database tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationConfig {
    pub region: String,
    pub group: String,
    /// Replaces `https://ec2.<region>.amazonaws.com` (a local test server).
    pub endpoint: Option<String>,
}

impl IsolationConfig {
    /// `None` when neither `DOB_PEER_REGION` nor `DOB_PEER_FENCE_GROUP` is set; one
    /// without the other is an error.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        match (get("DOB_PEER_REGION"), get("DOB_PEER_FENCE_GROUP")) {
            (None, None) => Ok(None),
            (Some(region), Some(group)) => Ok(Some(IsolationConfig {
                region,
                group,
                endpoint: get("DOB_PEER_EC2_ENDPOINT"),
            })),
            (Some(_), None) => Err(Error::config(
                "DOB_PEER_FENCE_GROUP",
                "is required with DOB_PEER_REGION (the tag value of the other region's database tier)",
            )),
            (None, Some(_)) => Err(Error::config(
                "DOB_PEER_REGION",
                "is required with DOB_PEER_FENCE_GROUP (the other region, whose EC2 API isolates it)",
            )),
        }
    }

    /// The region's EC2 API with the standard credential chain.
    pub fn connect(&self) -> Result<Ec2> {
        let credentials = Credentials::default().map_err(|e| {
            Error::with_source(
                "finding AWS credentials (environment, profile or EC2 instance profile)",
                e,
            )
        })?;
        Ok(self.connect_with(credentials))
    }

    pub fn connect_with(&self, credentials: Credentials) -> Ec2 {
        Ec2::new(&self.region, self.endpoint.as_deref(), credentials)
    }
}

/// One subnet of the group and the network ACL it is associated with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetAcl {
    pub subnet: String,
    pub association: String,
    pub acl: String,
    /// [`PREVIOUS_ACL_TAG`], when isolated by a takeover.
    pub previous_acl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub id: String,
    pub state: String,
    /// [`STOPPED_TAG`] is set.
    pub stopped_by_takeover: bool,
}

/// What the group has, as the EC2 API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub isolation_acl: String,
    pub subnets: Vec<SubnetAcl>,
    pub instances: Vec<Instance>,
}

/// What isolating changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub reassociate: Vec<SubnetAcl>,
    pub already_isolated: Vec<String>,
    pub stop: Vec<String>,
    pub already_stopped: Vec<String>,
}

/// Isolating touches only what is not isolated yet, so a re-run finishes a partial one.
pub fn plan(inventory: &Inventory) -> Plan {
    let (isolated, open): (Vec<_>, Vec<_>) = inventory
        .subnets
        .iter()
        .partition(|s| s.acl == inventory.isolation_acl);
    let (running, stopped): (Vec<_>, Vec<_>) = inventory
        .instances
        .iter()
        .partition(|i| matches!(i.state.as_str(), "pending" | "running"));
    Plan {
        reassociate: open.into_iter().cloned().collect(),
        already_isolated: isolated.into_iter().map(|s| s.subnet.clone()).collect(),
        stop: running.into_iter().map(|i| i.id.clone()).collect(),
        already_stopped: stopped.into_iter().map(|i| i.id.clone()).collect(),
    }
}

/// Whether a network ACL, as `DescribeNetworkAcls` gives it (an `item` of
/// `networkAclSet`), isolates: it allows nothing but TCP to port 443 coming in and TCP to
/// ports from 1024 going out (the replies). No connection a host in the subnet starts can
/// work then: its replies would need an inbound rule for a port other than 443, and
/// nothing in a database subnet listens on 443. Any other allow is not the isolation
/// Terraform made, and is refused.
pub fn isolates(acl: &Node) -> bool {
    acl.items("entrySet").all(|entry| {
        if entry.text_of("ruleAction") != Some("allow") {
            return true;
        }
        let port = |end: &str| {
            entry
                .find(&["portRange", end])
                .and_then(|n| n.text.parse::<u32>().ok())
        };
        let tcp = entry.text_of("protocol") == Some("6");
        match entry.text_of("egress") {
            Some("false") => tcp && port("from") == Some(443) && port("to") == Some(443),
            Some("true") => tcp && port("from").is_some_and(|p| p >= 1024),
            _ => false,
        }
    })
}

fn tag_value<'a>(item: &'a Node, key: &str) -> Option<&'a str> {
    item.items("tagSet")
        .find(|t| t.text_of("key") == Some(key))
        .and_then(|t| t.text_of("value"))
}

fn required<'a>(node: &'a Node, name: &str, what: &str) -> Result<&'a str> {
    node.text_of(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::other(format!("{what}: the answer has no {name}")))
}

/// The isolation ACL of `group` from a `DescribeNetworkAcls` answer filtered by its tag.
pub fn isolation_acl_of(answer: &Node, group: &str) -> Result<String> {
    let acls: Vec<&Node> = answer.items("networkAclSet").collect();
    let acl = match acls.as_slice() {
        [acl] => *acl,
        [] => {
            return Err(Error::other(format!(
                "no network ACL is tagged {ACL_TAG}={group}: Terraform creates it with the region's network"
            )))
        }
        _ => {
            return Err(Error::other(format!(
                "{} network ACLs are tagged {ACL_TAG}={group}; exactly one is expected",
                acls.len()
            )))
        }
    };
    let id = required(acl, "networkAclId", "DescribeNetworkAcls")?;
    if !isolates(acl) {
        return Err(Error::other(format!(
            "network ACL {id} ({ACL_TAG}={group}) allows more than HTTPS in and its replies out: it would not isolate the subnets"
        )));
    }
    Ok(id.to_owned())
}

/// Each subnet's association from a `DescribeNetworkAcls` answer filtered by
/// `association.subnet-id`; every subnet in `subnets` must have one.
pub fn associations_of(
    answer: &Node,
    subnets: &[(String, Option<String>)],
) -> Result<Vec<SubnetAcl>> {
    let mut found = Vec::new();
    for (subnet, previous_acl) in subnets {
        let association = answer.items("networkAclSet").find_map(|acl| {
            acl.items("associationSet")
                .find(|a| a.text_of("subnetId") == Some(subnet))
                .map(|a| (acl, a))
        });
        let Some((acl, association)) = association else {
            return Err(Error::other(format!(
                "subnet {subnet} has no network ACL association"
            )));
        };
        found.push(SubnetAcl {
            subnet: subnet.clone(),
            association: required(
                association,
                "networkAclAssociationId",
                "DescribeNetworkAcls",
            )?
            .to_owned(),
            acl: required(acl, "networkAclId", "DescribeNetworkAcls")?.to_owned(),
            previous_acl: previous_acl.clone(),
        });
    }
    Ok(found)
}

/// The instances of a `DescribeInstances` answer.
pub fn instances_of(answer: &Node) -> Result<Vec<Instance>> {
    let mut found = Vec::new();
    for reservation in answer.items("reservationSet") {
        for instance in reservation.items("instancesSet") {
            found.push(Instance {
                id: required(instance, "instanceId", "DescribeInstances")?.to_owned(),
                state: instance
                    .find(&["instanceState", "name"])
                    .map(|n| n.text.clone())
                    .unwrap_or_default(),
                stopped_by_takeover: tag_value(instance, STOPPED_TAG).is_some(),
            });
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

/// Reads the group's isolation ACL, subnets (with their associations) and instances.
pub fn inventory(ec2: &Ec2, group: &str) -> Result<Inventory> {
    let acl_answer = ec2.call(
        "DescribeNetworkAcls",
        &filter_params(1, &[(&format!("tag:{ACL_TAG}"), &[group])]),
    )?;
    let isolation_acl = isolation_acl_of(&acl_answer, group)?;
    let subnet_answer = ec2.call(
        "DescribeSubnets",
        &filter_params(1, &[(&format!("tag:{GROUP_TAG}"), &[group])]),
    )?;
    let mut subnets: Vec<(String, Option<String>)> = subnet_answer
        .items("subnetSet")
        .map(|s| {
            Ok((
                required(s, "subnetId", "DescribeSubnets")?.to_owned(),
                tag_value(s, PREVIOUS_ACL_TAG).map(str::to_owned),
            ))
        })
        .collect::<Result<_>>()?;
    subnets.sort();
    if subnets.is_empty() {
        return Err(Error::other(format!(
            "no subnet in {} is tagged {GROUP_TAG}={group}: nothing to isolate",
            ec2.region()
        )));
    }
    let ids: Vec<&str> = subnets.iter().map(|(id, _)| id.as_str()).collect();
    let association_answer = ec2.call(
        "DescribeNetworkAcls",
        &filter_params(1, &[("association.subnet-id", &ids)]),
    )?;
    let subnets = associations_of(&association_answer, &subnets)?;
    let instance_answer = ec2.call(
        "DescribeInstances",
        &filter_params(
            1,
            &[
                (&format!("tag:{GROUP_TAG}"), &[group]),
                (
                    "instance-state-name",
                    &["pending", "running", "stopping", "stopped"],
                ),
            ],
        ),
    )?;
    Ok(Inventory {
        isolation_acl,
        subnets,
        instances: instances_of(&instance_answer)?,
    })
}

/// A subnet moved to the isolation ACL, and the ACL it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetChange {
    pub subnet: String,
    pub from_acl: String,
}

/// Where an isolation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationState {
    Isolated,
    /// A dry run: what it lists would be changed.
    WouldIsolate,
    /// See the report's `error`; what it lists was done before the failure.
    Failed,
    NotConfigured,
}

impl std::fmt::Display for IsolationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IsolationState::Isolated => "isolated",
            IsolationState::WouldIsolate => "would isolate",
            IsolationState::Failed => "failed",
            IsolationState::NotConfigured => "not configured",
        })
    }
}

/// What the takeover did to the old region through its API, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IsolationReport {
    pub state: IsolationState,
    pub region: Option<String>,
    pub group: Option<String>,
    pub isolation_acl: Option<String>,
    /// Moved to the isolation ACL by this run (a dry run: would be).
    pub subnets: Vec<SubnetChange>,
    pub already_isolated_subnets: Vec<String>,
    /// Stopped by this run (a dry run: would be).
    pub instances_stopped: Vec<String>,
    pub already_stopped: Vec<String>,
    pub error: Option<String>,
}

impl IsolationReport {
    pub fn not_configured() -> IsolationReport {
        IsolationReport {
            state: IsolationState::NotConfigured,
            region: None,
            group: None,
            isolation_acl: None,
            subnets: Vec::new(),
            already_isolated_subnets: Vec::new(),
            instances_stopped: Vec::new(),
            already_stopped: Vec::new(),
            error: Some(
                "DOB_PEER_REGION and DOB_PEER_FENCE_GROUP are not set: the old region cannot be isolated through its API"
                    .into(),
            ),
        }
    }

    fn start(config: &IsolationConfig) -> IsolationReport {
        IsolationReport {
            region: Some(config.region.clone()),
            group: Some(config.group.clone()),
            error: None,
            ..IsolationReport::not_configured()
        }
    }

    /// Nothing was tried: `why`.
    pub fn failed(config: &IsolationConfig, why: String) -> IsolationReport {
        IsolationReport {
            state: IsolationState::Failed,
            error: Some(why),
            ..IsolationReport::start(config)
        }
    }

    pub fn isolated(&self) -> bool {
        self.state == IsolationState::Isolated
    }
}

/// Isolates the group (or, with `dry_run`, says what it would do). Every failure is
/// in the report (`state: failed`), with what was done before it.
pub fn isolate(ec2: &Ec2, config: &IsolationConfig, epoch: u64, dry_run: bool) -> IsolationReport {
    let mut report = IsolationReport::start(config);
    if let Err(err) = isolate_into(ec2, config, epoch, dry_run, &mut report) {
        report.state = IsolationState::Failed;
        report.error = Some(err.chain());
    }
    report
}

fn isolate_into(
    ec2: &Ec2,
    config: &IsolationConfig,
    epoch: u64,
    dry_run: bool,
    report: &mut IsolationReport,
) -> Result<()> {
    let inventory = inventory(ec2, &config.group)?;
    let plan = plan(&inventory);
    report.isolation_acl = Some(inventory.isolation_acl.clone());
    report.already_isolated_subnets = plan.already_isolated.clone();
    report.already_stopped = plan.already_stopped.clone();
    if dry_run {
        report.state = IsolationState::WouldIsolate;
        report.subnets = plan
            .reassociate
            .iter()
            .map(|s| SubnetChange {
                subnet: s.subnet.clone(),
                from_acl: s.acl.clone(),
            })
            .collect();
        report.instances_stopped = plan.stop;
        return Ok(());
    }
    for subnet in &plan.reassociate {
        // The way back first: a subnet isolated without it could not be lifted.
        create_tags(
            ec2,
            std::slice::from_ref(&subnet.subnet),
            PREVIOUS_ACL_TAG,
            &subnet.acl,
        )?;
        ec2.call(
            "ReplaceNetworkAclAssociation",
            &[
                ("AssociationId".to_owned(), subnet.association.clone()),
                ("NetworkAclId".to_owned(), inventory.isolation_acl.clone()),
            ],
        )?;
        log::info!(
            "isolated subnet {} in {} (network ACL {} -> {})",
            subnet.subnet,
            config.region,
            subnet.acl,
            inventory.isolation_acl
        );
        report.subnets.push(SubnetChange {
            subnet: subnet.subnet.clone(),
            from_acl: subnet.acl.clone(),
        });
    }
    if !plan.stop.is_empty() {
        create_tags(ec2, &plan.stop, STOPPED_TAG, &epoch.to_string())?;
        let mut params = list_params("InstanceId", &plan.stop);
        params.push(("Force".to_owned(), "true".to_owned()));
        ec2.call("StopInstances", &params)?;
        log::info!("stopped {} in {}", plan.stop.join(", "), config.region);
        report.instances_stopped = plan.stop;
    }
    report.state = IsolationState::Isolated;
    Ok(())
}

fn create_tags(ec2: &Ec2, resources: &[String], key: &str, value: &str) -> Result<()> {
    let mut params = list_params("ResourceId", resources);
    params.push(("Tag.1.Key".to_owned(), key.to_owned()));
    params.push(("Tag.1.Value".to_owned(), value.to_owned()));
    ec2.call("CreateTags", &params).map(|_| ())
}

fn delete_tags(ec2: &Ec2, resources: &[String], key: &str) -> Result<()> {
    let mut params = list_params("ResourceId", resources);
    params.push(("Tag.1.Key".to_owned(), key.to_owned()));
    ec2.call("DeleteTags", &params).map(|_| ())
}

/// What lifting the isolation did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiftReport {
    pub region: String,
    pub group: String,
    pub dry_run: bool,
    /// Associated again with the ACL they had.
    pub subnets: Vec<SubnetChange>,
    pub instances_started: Vec<String>,
}

/// What lifting changes: isolated subnets back to their recorded ACL, instances a
/// takeover stopped started again. An isolated subnet with no record is an error:
/// which ACL it had is for a person to say.
pub fn lift_plan(inventory: &Inventory) -> Result<(Vec<SubnetAcl>, Vec<String>)> {
    let mut subnets = Vec::new();
    for subnet in inventory
        .subnets
        .iter()
        .filter(|s| s.acl == inventory.isolation_acl)
    {
        if subnet.previous_acl.is_none() {
            return Err(Error::other(format!(
                "subnet {} is on the isolation ACL {} with no {PREVIOUS_ACL_TAG} tag: associate it with its network ACL by hand",
                subnet.subnet, inventory.isolation_acl
            )));
        }
        subnets.push(subnet.clone());
    }
    let instances = inventory
        .instances
        .iter()
        .filter(|i| i.stopped_by_takeover && i.state == "stopped")
        .map(|i| i.id.clone())
        .collect();
    Ok((subnets, instances))
}

/// Undoes [`isolate`]: run from the writing region once the isolated one is to come
/// back (as a standby cluster of the writing one: `dob-promote --follow` there).
pub fn lift(ec2: &Ec2, config: &IsolationConfig, dry_run: bool) -> Result<LiftReport> {
    let inventory = inventory(ec2, &config.group)?;
    let (subnets, instances) = lift_plan(&inventory)?;
    let mut report = LiftReport {
        region: config.region.clone(),
        group: config.group.clone(),
        dry_run,
        subnets: subnets
            .iter()
            .map(|s| SubnetChange {
                subnet: s.subnet.clone(),
                from_acl: s.acl.clone(),
            })
            .collect(),
        instances_started: instances.clone(),
    };
    if dry_run {
        return Ok(report);
    }
    report.subnets.clear();
    for subnet in &subnets {
        let previous = subnet.previous_acl.clone().unwrap_or_default();
        ec2.call(
            "ReplaceNetworkAclAssociation",
            &[
                ("AssociationId".to_owned(), subnet.association.clone()),
                ("NetworkAclId".to_owned(), previous.clone()),
            ],
        )?;
        delete_tags(ec2, std::slice::from_ref(&subnet.subnet), PREVIOUS_ACL_TAG)?;
        report.subnets.push(SubnetChange {
            subnet: subnet.subnet.clone(),
            from_acl: subnet.acl.clone(),
        });
    }
    if !instances.is_empty() {
        ec2.call("StartInstances", &list_params("InstanceId", &instances))?;
        delete_tags(ec2, &instances, STOPPED_TAG)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec2::parse_xml;

    fn subnet(id: &str, acl: &str, previous: Option<&str>) -> SubnetAcl {
        SubnetAcl {
            subnet: id.into(),
            association: format!("aclassoc-{id}"),
            acl: acl.into(),
            previous_acl: previous.map(Into::into),
        }
    }

    fn instance(id: &str, state: &str, stopped_by_takeover: bool) -> Instance {
        Instance {
            id: id.into(),
            state: state.into(),
            stopped_by_takeover,
        }
    }

    #[test]
    fn isolating_touches_only_what_is_still_open() {
        let inventory = Inventory {
            isolation_acl: "acl-isolation".into(),
            subnets: vec![
                subnet("s1", "acl-open", None),
                subnet("s2", "acl-isolation", Some("acl-open")),
            ],
            instances: vec![
                instance("i-1", "running", false),
                instance("i-2", "stopped", true),
                instance("i-3", "pending", false),
                instance("i-4", "stopping", false),
            ],
        };
        let plan = plan(&inventory);
        assert_eq!(plan.reassociate, vec![subnet("s1", "acl-open", None)]);
        assert_eq!(plan.already_isolated, ["s2"]);
        assert_eq!(plan.stop, ["i-1", "i-3"]);
        assert_eq!(plan.already_stopped, ["i-2", "i-4"]);
        let (subnets, started) = lift_plan(&inventory).unwrap();
        assert_eq!(
            subnets,
            vec![subnet("s2", "acl-isolation", Some("acl-open"))]
        );
        assert_eq!(started, ["i-2"], "only what a takeover stopped");
    }

    #[test]
    fn the_state_is_reported_as_the_drill_and_operators_read_it() {
        let json = |state| serde_json::to_value(state).unwrap();
        assert_eq!(json(IsolationState::Isolated), "isolated");
        assert_eq!(json(IsolationState::WouldIsolate), "would-isolate");
        assert_eq!(json(IsolationState::Failed), "failed");
        assert_eq!(json(IsolationState::NotConfigured), "not-configured");
    }

    #[test]
    fn a_subnet_isolated_without_its_record_is_not_lifted_by_guess() {
        let inventory = Inventory {
            isolation_acl: "acl-isolation".into(),
            subnets: vec![subnet("s1", "acl-isolation", None)],
            instances: vec![],
        };
        let err = lift_plan(&inventory).unwrap_err().chain();
        assert!(err.contains("by hand"), "{err}");
    }

    #[test]
    fn only_one_acl_that_allows_https_in_and_its_replies_out_is_the_isolation() {
        let answer = |entries: &str, count: usize| {
            let acl = format!(
                "<item><networkAclId>acl-isolation</networkAclId><entrySet>{entries}</entrySet></item>"
            );
            parse_xml(&format!(
                "<DescribeNetworkAclsResponse><networkAclSet>{}</networkAclSet></DescribeNetworkAclsResponse>",
                acl.repeat(count)
            ))
            .unwrap()
        };
        let deny = "<item><ruleNumber>32767</ruleNumber><ruleAction>deny</ruleAction><egress>true</egress></item>\
                    <item><ruleNumber>32767</ruleNumber><ruleAction>deny</ruleAction><egress>false</egress></item>";
        assert_eq!(
            isolation_acl_of(&answer(deny, 1), "g").unwrap(),
            "acl-isolation"
        );
        let rule = |egress: bool, protocol: &str, from: u32, to: u32| {
            format!(
                "<item><ruleNumber>100</ruleNumber><protocol>{protocol}</protocol><ruleAction>allow</ruleAction>\
                 <egress>{egress}</egress><cidrBlock>10.20.0.0/16</cidrBlock>\
                 <portRange><from>{from}</from><to>{to}</to></portRange></item>"
            )
        };
        let terraform = format!(
            "{}{}{deny}",
            rule(false, "6", 443, 443),
            rule(true, "6", 1024, 65535)
        );
        assert_eq!(
            isolation_acl_of(&answer(&terraform, 1), "g").unwrap(),
            "acl-isolation"
        );
        for leak in [
            rule(false, "6", 5432, 5432),
            rule(false, "6", 0, 65535),
            rule(false, "-1", 443, 443),
            rule(true, "6", 0, 65535),
            rule(true, "17", 1024, 65535),
            "<item><ruleNumber>100</ruleNumber><protocol>-1</protocol><ruleAction>allow</ruleAction></item>"
                .to_owned(),
        ] {
            let acl = format!("{leak}{deny}");
            assert!(
                isolation_acl_of(&answer(&acl, 1), "g")
                    .unwrap_err()
                    .chain()
                    .contains("would not isolate"),
                "{leak}"
            );
        }
        assert!(isolation_acl_of(&answer(deny, 0), "g")
            .unwrap_err()
            .chain()
            .contains("Terraform creates it"));
        assert!(isolation_acl_of(&answer(deny, 2), "g")
            .unwrap_err()
            .chain()
            .contains("exactly one"));
    }

    #[test]
    fn associations_and_instances_are_read_from_ec2s_answers() {
        let acls = parse_xml(
            "<R><networkAclSet>\
               <item><networkAclId>acl-a</networkAclId><associationSet>\
                 <item><networkAclAssociationId>aclassoc-1</networkAclAssociationId><subnetId>s1</subnetId></item>\
                 <item><networkAclAssociationId>aclassoc-9</networkAclAssociationId><subnetId>s9</subnetId></item>\
               </associationSet></item>\
               <item><networkAclId>acl-isolation</networkAclId><associationSet>\
                 <item><networkAclAssociationId>aclassoc-2</networkAclAssociationId><subnetId>s2</subnetId></item>\
               </associationSet></item>\
             </networkAclSet></R>",
        )
        .unwrap();
        let found = associations_of(
            &acls,
            &[("s1".into(), None), ("s2".into(), Some("acl-a".into()))],
        )
        .unwrap();
        assert_eq!(
            found,
            vec![
                SubnetAcl {
                    subnet: "s1".into(),
                    association: "aclassoc-1".into(),
                    acl: "acl-a".into(),
                    previous_acl: None
                },
                SubnetAcl {
                    subnet: "s2".into(),
                    association: "aclassoc-2".into(),
                    acl: "acl-isolation".into(),
                    previous_acl: Some("acl-a".into())
                }
            ]
        );
        assert!(associations_of(&acls, &[("s3".into(), None)]).is_err());
        let instances = parse_xml(
            "<R><reservationSet><item><instancesSet>\
               <item><instanceId>i-2</instanceId><instanceState><name>stopped</name></instanceState>\
                 <tagSet><item><key>dob:stopped-by-takeover</key><value>3</value></item></tagSet></item>\
               <item><instanceId>i-1</instanceId><instanceState><name>running</name></instanceState></item>\
             </instancesSet></item></reservationSet></R>",
        )
        .unwrap();
        assert_eq!(
            instances_of(&instances).unwrap(),
            vec![
                instance("i-1", "running", false),
                instance("i-2", "stopped", true)
            ]
        );
    }

    #[test]
    fn the_peer_region_and_its_group_come_together() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(IsolationConfig::from_lookup(&env(&[])).unwrap(), None);
        assert_eq!(
            IsolationConfig::from_lookup(&env(&[
                ("DOB_PEER_REGION", "eu-west-1"),
                ("DOB_PEER_FENCE_GROUP", "dob-eu-west-1")
            ]))
            .unwrap(),
            Some(IsolationConfig {
                region: "eu-west-1".into(),
                group: "dob-eu-west-1".into(),
                endpoint: None
            })
        );
        assert!(IsolationConfig::from_lookup(&env(&[("DOB_PEER_REGION", "eu-west-1")])).is_err());
        assert!(IsolationConfig::from_lookup(&env(&[("DOB_PEER_FENCE_GROUP", "g")])).is_err());
    }
}
