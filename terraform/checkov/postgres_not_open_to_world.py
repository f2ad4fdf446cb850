"""CKV_DOB_1: no security group opens PostgreSQL (TCP 5432) to the whole internet.

checkov ships such checks for SSH, RDP and port 80, not for 5432. This one covers the three
ways Terraform writes an ingress rule:

- inline ``ingress`` blocks (or an ``ingress = [...]`` list) of ``aws_security_group``,
- ``aws_security_group_rule`` with ``type = "ingress"``,
- ``aws_vpc_security_group_ingress_rule``,

and fails when one of them admits a world-wide source (any IPv4 or IPv6 CIDR with a /0
prefix, such as 0.0.0.0/0 or ::/0) on a port range that contains 5432 over TCP or over
all protocols (``-1``/``all``). A rule whose ports or protocol cannot be resolved (an
unresolved variable) while its source is world-wide fails too: unknown is not safe.
Rules with no CIDR source (security group references, prefix lists, ``self``) pass.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

POSTGRES_PORT = 5432
ALL_PROTOCOLS = {"-1", "all"}
TCP = {"tcp", "6"}


def unwrap(value: Any) -> Any:
    """checkov wraps every attribute value in a one-element list; take it out."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def as_list(value: Any) -> list[Any]:
    """An attribute that holds a list (possibly wrapped, possibly a single value)."""
    value = unwrap(value)
    if value is None:
        return []
    if isinstance(value, list):
        flat: list[Any] = []
        for item in value:
            flat.extend(as_list(item))
        return flat
    return [value]


def is_world(cidr: Any) -> bool:
    """True for any CIDR with a /0 prefix (0.0.0.0/0, ::/0, and their spellings)."""
    if not isinstance(cidr, str):
        return False
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def as_port(value: Any) -> int | None:
    value = unwrap(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def exposes_postgres(protocol: Any, from_port: Any, to_port: Any) -> bool:
    """Whether the rule's protocol and ports reach TCP 5432; unknown counts as yes."""
    protocol = unwrap(protocol)
    proto = str(protocol).strip().lower() if protocol is not None else None
    if proto in ALL_PROTOCOLS:
        return True  # every port, whatever from_port/to_port say
    if proto is not None and proto not in TCP:
        # udp, icmp, ... do not reach PostgreSQL; an unresolved "${var.x}" might.
        return proto.startswith("${") or "var." in proto
    low, high = as_port(from_port), as_port(to_port)
    if low is None or high is None:
        return True
    if low == 0 and high == 0:
        return False  # tcp 0-0 is port 0 only (all ports needs protocol -1)
    return low <= POSTGRES_PORT <= high


class PostgresNotOpenToWorld(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure no security group allows ingress from 0.0.0.0/0 or ::/0 to PostgreSQL (TCP 5432)",
            id="CKV_DOB_1",
            categories=(CheckCategories.NETWORKING,),
            supported_resources=(
                "aws_security_group",
                "aws_security_group_rule",
                "aws_vpc_security_group_ingress_rule",
            ),
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        resource_type = self.entity_type
        if resource_type == "aws_security_group":
            for index, rule in enumerate(self._inline_ingress_rules(conf)):
                if self._legacy_rule_is_open(rule):
                    self.evaluated_keys = [f"ingress/[{index}]"]
                    return CheckResult.FAILED
            return CheckResult.PASSED

        if resource_type == "aws_security_group_rule":
            if str(unwrap(conf.get("type"))).lower() != "ingress":
                return CheckResult.PASSED
            self.evaluated_keys = ["type", "protocol", "from_port", "to_port", "cidr_blocks", "ipv6_cidr_blocks"]
            return CheckResult.FAILED if self._legacy_rule_is_open(conf) else CheckResult.PASSED

        # aws_vpc_security_group_ingress_rule: one CIDR per rule, ip_protocol "-1" means
        # every port (from_port/to_port are then absent).
        self.evaluated_keys = ["ip_protocol", "from_port", "to_port", "cidr_ipv4", "cidr_ipv6"]
        sources = as_list(conf.get("cidr_ipv4")) + as_list(conf.get("cidr_ipv6"))
        if not any(is_world(c) for c in sources):
            return CheckResult.PASSED
        if exposes_postgres(conf.get("ip_protocol"), conf.get("from_port"), conf.get("to_port")):
            return CheckResult.FAILED
        return CheckResult.PASSED

    @staticmethod
    def _inline_ingress_rules(conf: dict[str, list[Any]]) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        for item in as_list(conf.get("ingress")):
            if isinstance(item, dict):
                rules.append(item)
        return rules

    @staticmethod
    def _legacy_rule_is_open(rule: dict[str, Any]) -> bool:
        """An inline ingress block or an aws_security_group_rule (cidr_blocks lists)."""
        sources = as_list(rule.get("cidr_blocks")) + as_list(rule.get("ipv6_cidr_blocks"))
        if not any(is_world(c) for c in sources):
            return False
        return exposes_postgres(rule.get("protocol"), rule.get("from_port"), rule.get("to_port"))


check = PostgresNotOpenToWorld()
