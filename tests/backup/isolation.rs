//! The takeover's isolation of the old region through the EC2 API, against moto_server's
//! EC2 (the same server as the S3 tests): a dry run changes nothing; isolating moves every
//! database subnet of the group to its isolation ACL and stops its hosts, leaves other
//! subnets and hosts alone, and a re-run finds nothing left to do;
//! `dob-promote --lift-isolation` puts it all back; an API that does not answer or an
//! ACL that lets a connection through is a failure, never "isolated".

use crate::helpers::*;
use dob::ec2::{filter_params, list_params, Ec2, Node};
use dob::failover::isolation::{self, IsolationConfig, IsolationState, ACL_TAG, GROUP_TAG};
use s3::creds::Credentials;
const REGION: &str = "eu-west-1";

fn ec2_at(endpoint: &str) -> Ec2 {
    let credentials = Credentials::new(Some(ACCESS_KEY), Some(SECRET_KEY), None, None, None)
        .expect("static credentials");
    Ec2::new(REGION, Some(endpoint), credentials)
}

fn ec2() -> Ec2 {
    ec2_at(&shared_s3().endpoint())
}

fn call(ec2: &Ec2, action: &str, params: &[(&str, &str)]) -> Node {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ec2.call(action, &params)
        .unwrap_or_else(|e| panic!("{action}: {}", e.chain()))
}

fn tag(ec2: &Ec2, resources: &[String], key: &str, value: &str) {
    let mut params = list_params("ResourceId", resources);
    params.push(("Tag.1.Key".into(), key.into()));
    params.push(("Tag.1.Value".into(), value.into()));
    ec2.call("CreateTags", &params).unwrap();
}

/// A region's database tier as Terraform leaves it: a VPC, two tagged subnets with
/// their network ACL, the isolation ACL (no rule: nothing but the default deny), two tagged hosts; and one subnet and host of
/// another tier that isolating must not touch.
struct Tier {
    group: String,
    open_acl: String,
    isolation_acl: String,
    subnets: Vec<String>,
    hosts: Vec<String>,
    other_subnet: String,
    other_host: String,
}

fn tier(ec2: &Ec2) -> Tier {
    let group = unique("dob-test-");
    let vpc = call(ec2, "CreateVpc", &[("CidrBlock", "10.80.0.0/16")]);
    let vpc = vpc.find(&["vpc", "vpcId"]).unwrap().text.clone();
    let subnet = |cidr: &str| {
        let answer = call(ec2, "CreateSubnet", &[("VpcId", &vpc), ("CidrBlock", cidr)]);
        answer.find(&["subnet", "subnetId"]).unwrap().text.clone()
    };
    let subnets = vec![subnet("10.80.1.0/24"), subnet("10.80.2.0/24")];
    let other_subnet = subnet("10.80.3.0/24");
    tag(ec2, &subnets, GROUP_TAG, &group);
    let acl = |tagged: Option<&str>| {
        let answer = call(ec2, "CreateNetworkAcl", &[("VpcId", &vpc)]);
        let id = answer
            .find(&["networkAcl", "networkAclId"])
            .unwrap()
            .text
            .clone();
        if let Some(value) = tagged {
            tag(ec2, std::slice::from_ref(&id), ACL_TAG, value);
        }
        id
    };
    let open_acl = acl(None);
    let isolation_acl = acl(Some(&group));
    // The database subnets on their own ACL, as the network module associates them.
    let associations = ec2
        .call(
            "DescribeNetworkAcls",
            &filter_params(1, &[("vpc-id", &[vpc.as_str()])]),
        )
        .unwrap();
    for item in associations.items("networkAclSet") {
        for association in item.items("associationSet") {
            let subnet = association.text_of("subnetId").unwrap_or_default();
            if subnets.iter().any(|s| s == subnet) {
                call(
                    ec2,
                    "ReplaceNetworkAclAssociation",
                    &[
                        (
                            "AssociationId",
                            association.text_of("networkAclAssociationId").unwrap(),
                        ),
                        ("NetworkAclId", &open_acl),
                    ],
                );
            }
        }
    }
    let run = |subnet: &str, count: &str| -> Vec<String> {
        let answer = call(
            ec2,
            "RunInstances",
            &[
                ("ImageId", "ami-12345678"),
                ("MinCount", count),
                ("MaxCount", count),
                ("SubnetId", subnet),
            ],
        );
        answer
            .items("instancesSet")
            .map(|i| i.text_of("instanceId").unwrap().to_owned())
            .collect()
    };
    let hosts = run(&subnets[0], "2");
    tag(ec2, &hosts, GROUP_TAG, &group);
    let other_host = run(&other_subnet, "1").remove(0);
    Tier {
        group,
        open_acl,
        isolation_acl,
        subnets,
        hosts,
        other_subnet,
        other_host,
    }
}

fn acl_of(ec2: &Ec2, subnet: &str) -> String {
    let answer = ec2
        .call(
            "DescribeNetworkAcls",
            &filter_params(1, &[("association.subnet-id", &[subnet])]),
        )
        .unwrap();
    let ids: Vec<_> = answer
        .items("networkAclSet")
        .filter_map(|a| a.text_of("networkAclId"))
        .collect();
    assert_eq!(ids.len(), 1, "{subnet}: {ids:?}");
    ids[0].to_owned()
}

fn state_of(ec2: &Ec2, host: &str) -> String {
    let answer = ec2
        .call(
            "DescribeInstances",
            &list_params("InstanceId", &[host.to_owned()]),
        )
        .unwrap();
    let state = answer
        .items("reservationSet")
        .flat_map(|r| r.items("instancesSet"))
        .find_map(|i| i.find(&["instanceState", "name"]).map(|n| n.text.clone()));
    state.unwrap()
}

fn config(tier: &Tier) -> IsolationConfig {
    IsolationConfig {
        region: REGION.into(),
        group: tier.group.clone(),
        endpoint: Some(shared_s3().endpoint()),
    }
}

fn lift_with_the_binary(tier: &Tier, dry_run: bool) -> (i32, serde_json::Value) {
    let args: &[&str] = if dry_run {
        &["--lift-isolation", "--dry-run"]
    } else {
        &["--lift-isolation"]
    };
    promote_json(
        args,
        &[
            ("DOB_PEER_REGION", REGION),
            ("DOB_PEER_FENCE_GROUP", &tier.group),
            ("DOB_PEER_EC2_ENDPOINT", &shared_s3().endpoint()),
        ],
    )
}

#[test]
fn isolating_cuts_the_tier_off_and_lifting_puts_it_back() {
    let ec2 = ec2();
    let tier = tier(&ec2);
    let config = config(&tier);

    let dry = isolation::isolate(&ec2, &config, 4, true);
    assert_eq!(dry.state, IsolationState::WouldIsolate, "{dry:?}");
    assert_eq!(dry.subnets.len(), 2);
    assert_eq!(dry.instances_stopped, {
        let mut h = tier.hosts.clone();
        h.sort();
        h
    });
    for subnet in &tier.subnets {
        assert_eq!(
            acl_of(&ec2, subnet),
            tier.open_acl,
            "a dry run changes nothing"
        );
    }
    assert_eq!(state_of(&ec2, &tier.hosts[0]), "running");

    let done = isolation::isolate(&ec2, &config, 4, false);
    assert_eq!(done.state, IsolationState::Isolated, "{done:?}");
    assert_eq!(
        done.isolation_acl.as_deref(),
        Some(tier.isolation_acl.as_str())
    );
    assert!(done.subnets.iter().all(|s| s.from_acl == tier.open_acl));
    for subnet in &tier.subnets {
        assert_eq!(acl_of(&ec2, subnet), tier.isolation_acl);
    }
    for host in &tier.hosts {
        assert!(
            matches!(state_of(&ec2, host).as_str(), "stopping" | "stopped"),
            "{host}"
        );
    }
    assert_ne!(
        acl_of(&ec2, &tier.other_subnet),
        tier.isolation_acl,
        "another tier"
    );
    assert_eq!(state_of(&ec2, &tier.other_host), "running", "another tier");

    let again = isolation::isolate(&ec2, &config, 4, false);
    assert_eq!(again.state, IsolationState::Isolated);
    assert!(again.subnets.is_empty() && again.instances_stopped.is_empty());
    assert_eq!(again.already_isolated_subnets.len(), 2);

    let (code, dry_lift) = lift_with_the_binary(&tier, true);
    assert_eq!(code, 0, "{dry_lift}");
    assert_eq!(dry_lift["subnets"].as_array().unwrap().len(), 2);
    assert_eq!(
        acl_of(&ec2, &tier.subnets[0]),
        tier.isolation_acl,
        "a dry run changes nothing"
    );
    let (code, lifted) = lift_with_the_binary(&tier, false);
    assert_eq!(code, 0, "{lifted}");
    for subnet in &tier.subnets {
        assert_eq!(acl_of(&ec2, subnet), tier.open_acl, "back on its own ACL");
    }
    for host in &tier.hosts {
        assert!(
            matches!(state_of(&ec2, host).as_str(), "pending" | "running"),
            "{host} started again"
        );
    }
    let (code, nothing) = lift_with_the_binary(&tier, false);
    assert_eq!(code, 0, "{nothing}");
    assert!(nothing["subnets"].as_array().unwrap().is_empty());
    assert!(nothing["instances_started"].as_array().unwrap().is_empty());
}

#[test]
fn an_api_that_does_not_answer_or_an_acl_that_allows_traffic_isolates_nothing() {
    let ec2 = ec2();
    let tier = tier(&ec2);
    // Nothing listens on a port just freed.
    let closed = format!("http://127.0.0.1:{}", dob::testing::free_port().unwrap());
    let down = isolation::isolate(&ec2_at(&closed), &config(&tier), 4, false);
    assert_eq!(down.state, IsolationState::Failed);
    assert!(
        down.error
            .as_deref()
            .unwrap()
            .contains("DescribeNetworkAcls"),
        "{down:?}"
    );

    call(
        &ec2,
        "CreateNetworkAclEntry",
        &[
            ("NetworkAclId", &tier.isolation_acl),
            ("RuleNumber", "100"),
            ("Protocol", "-1"),
            ("RuleAction", "allow"),
            ("Egress", "false"),
            ("CidrBlock", "0.0.0.0/0"),
        ],
    );
    let leaky = isolation::isolate(&ec2, &config(&tier), 4, false);
    assert_eq!(leaky.state, IsolationState::Failed);
    assert!(
        leaky
            .error
            .as_deref()
            .unwrap()
            .contains("would not isolate"),
        "{leaky:?}"
    );
    for subnet in &tier.subnets {
        assert_eq!(acl_of(&ec2, subnet), tier.open_acl, "nothing changed");
    }
    assert_eq!(state_of(&ec2, &tier.hosts[0]), "running");
}
