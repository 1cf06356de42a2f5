"""Properties the deployment must keep, as functions over a parsed template.

Each check raises AssertionError when the template breaks the property. test_template.py
runs them on template.yaml; test_checks_fail.py runs them on broken copies of it, to show
that every check can fail.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"

FUNCTION = "ConnectIdentitySyncFunction"
SOURCE_QUEUE = "SourceQueue"
# The SCIM endpoint (SPEC section 8): its function, role, API and token secret parameter.
SCIM_FUNCTION = "ScimFunction"
SCIM_ROLE = "ScimRole"
SCIM_API = "ScimApi"
SCIM_SECRET_PARAMETER = "ScimTokenSecretArn"

# SPEC section 3: one queue variable per failure class.
DLQ_VARIABLES = (
    "DLQ_URL_MALFORMED_EVENT",
    "DLQ_URL_VALIDATION_ERROR",
    "DLQ_URL_POLICY_VIOLATION",
    "DLQ_URL_INVALID_REQUEST",
    "DLQ_URL_INVALID_PARAMETER",
    "DLQ_URL_RESOURCE_NOT_FOUND",
    "DLQ_URL_THROTTLING",
    "DLQ_URL_INTERNAL_SERVICE",
    "DLQ_URL_UNKNOWN",
)

CONNECT_ACTIONS = {
    "connect:DescribeInstance",
    "connect:DescribeUser",
    "connect:UpdateUserIdentityInfo",
    "connect:SearchUsers",
    "connect:ListUsers",
}

# Default Amazon Connect quotas, requests per second, account-wide (SPEC section 2.4).
CONNECT_QUOTA_RPS = {
    "CONNECT_RPS_UPDATE": 2,  # UpdateUserIdentityInfo
    "CONNECT_RPS_DESCRIBE": 10,  # DescribeUser
    "CONNECT_RPS_SEARCH": 2,  # SearchUsers
    "CONNECT_RPS_LIST": 10,  # ListUsers
}

# The per-container rates the function accepts (src/config.rs, RATES); CONNECT_RPS_LIST may be 0.
FUNCTION_MIN_RATE = 0.01

# The staleness guard's item requests (SPEC section 2.5): lease-and-read, write-and-release.
DYNAMODB_ACTIONS = {"dynamodb:UpdateItem"}
WATERMARK_TABLE = "WatermarkTable"
# The adapter's TTL attribute (src/outbound/watermarks.rs, EXPIRY).
WATERMARK_EXPIRY_ATTRIBUTE = "expires_at"

INSTANCE_ARN = "arn:${AWS::Partition}:connect:${AWS::Region}:${AWS::AccountId}:instance/${ConnectInstanceId}"
AGENT_ARN = INSTANCE_ARN + "/agent/*"

# Which instance ARNs each Connect action may be granted on.
CONNECT_SCOPE = {
    "connect:DescribeInstance": {INSTANCE_ARN},
    "connect:SearchUsers": {INSTANCE_ARN, AGENT_ARN},
    "connect:ListUsers": {INSTANCE_ARN},
    "connect:DescribeUser": {AGENT_ARN},
    "connect:UpdateUserIdentityInfo": {AGENT_ARN},
}


# ----------------------------------------------------------------------------- loading


def load_template(path: Path = TEMPLATE) -> dict:
    """template.yaml as plain dicts and lists; short tags (!Ref, !Sub, ...) become the
    long forms ({"Ref": ...}, {"Fn::Sub": ...}), as CloudFormation reads them."""
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def transform_template(template: dict) -> dict:
    """The CloudFormation template SAM deploys: what AWS::Serverless-2016-10-31 expands
    the template into, including the roles and policies SAM generates itself."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    fragment = copy.deepcopy(template)
    for res in fragment.get("Resources", {}).values():
        if res.get("Type") == "AWS::Serverless::Function":
            # sam build/package replace the local CodeUri with an S3 location.
            res.setdefault("Properties", {})["CodeUri"] = "s3://bucket/bootstrap.zip"
    return transform(fragment, {}, NoManagedPolicies())


# ----------------------------------------------------------------------------- helpers


def resources(t: dict, type_: str | None = None) -> dict:
    return {k: v for k, v in t.get("Resources", {}).items() if type_ is None or v.get("Type") == type_}


def props(t: dict, logical_id: str) -> dict:
    return t["Resources"][logical_id].get("Properties", {})


def as_list(x: Any) -> list:
    return x if isinstance(x, list) else [x]


def resolve(t: dict, node: Any) -> Any:
    """The value of a node with parameters at their defaults; other intrinsics unchanged."""
    if isinstance(node, dict) and set(node) == {"Ref"}:
        param = t.get("Parameters", {}).get(node["Ref"])
        if param is not None:
            return param.get("Default")
    return node


def as_int(t: dict, node: Any) -> int:
    value = resolve(t, node)
    assert value is not None, f"{node!r} has no value (a parameter without a default?)"
    return int(value)


def ref_target(node: Any) -> str | None:
    """Logical id a {"Ref": X} or {"Fn::GetAtt": [X, "Arn"]} points to."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return node["Ref"]
        if set(node) == {"Fn::GetAtt"}:
            target = node["Fn::GetAtt"]
            if isinstance(target, str):
                target = target.split(".", 1)
            return target[0]
    return None


def function_env(t: dict) -> dict:
    return props(t, FUNCTION).get("Environment", {}).get("Variables", {})


def function_timeout(t: dict) -> int:
    p = props(t, FUNCTION)
    timeout = p.get("Timeout", t.get("Globals", {}).get("Function", {}).get("Timeout", 3))
    return as_int(t, timeout)


def sqs_event(t: dict) -> dict:
    events = [e for e in props(t, FUNCTION).get("Events", {}).values() if e.get("Type") == "SQS"]
    assert len(events) == 1, f"expected one SQS event source, found {len(events)}"
    return events[0].get("Properties", {})


def queues(t: dict) -> dict:
    return resources(t, "AWS::SQS::Queue")


def redrive_target(t: dict) -> str:
    policy = props(t, SOURCE_QUEUE).get("RedrivePolicy")
    assert policy, "the source queue has no redrive policy"
    target = ref_target(policy.get("deadLetterTargetArn"))
    assert target in queues(t), f"redrive target {target!r} is not a queue of this template"
    return target


def class_dlqs(t: dict) -> dict[str, str]:
    """DLQ_URL_* variable -> logical id of the queue it names."""
    env = function_env(t)
    return {var: ref_target(env[var]) for var in DLQ_VARIABLES if var in env}


def dead_letter_queues(t: dict) -> set[str]:
    return set(class_dlqs(t).values()) | {redrive_target(t)}


def policy_documents(t: dict) -> Iterator[tuple[str, dict]]:
    """(where, policy document) for every identity and queue policy in the template."""
    for lid, res in resources(t).items():
        p = res.get("Properties", {})
        typ = res.get("Type")
        if typ == "AWS::IAM::Role":
            for pol in p.get("Policies", []):
                yield f"{lid}/{pol.get('PolicyName')}", pol["PolicyDocument"]
        elif typ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield lid, p["PolicyDocument"]
        elif typ == "AWS::SQS::QueuePolicy":
            yield lid, p["PolicyDocument"]
        elif typ == "AWS::Serverless::Function":
            for i, pol in enumerate(as_list(p.get("Policies", []))):
                if isinstance(pol, dict) and "Statement" in pol:
                    yield f"{lid}/Policies[{i}]", pol


def statements(t: dict, effect: str | None = "Allow") -> Iterator[tuple[str, dict]]:
    for where, doc in policy_documents(t):
        for st in as_list(doc.get("Statement", [])):
            if effect is None or st.get("Effect") == effect:
                yield where, st


def role_statements(t: dict, role: str) -> list[dict]:
    return [st for where, st in statements(t) if where.split("/")[0] == role]


def function_role(t: dict) -> str:
    role = ref_target(props(t, FUNCTION).get("Role"))
    assert role in resources(t, "AWS::IAM::Role"), "the function does not use a role defined in this template"
    return role


def actions(st: dict) -> list[str]:
    return [a for a in as_list(st.get("Action", [])) if isinstance(a, str)]


def is_wildcard_action(action: str) -> bool:
    return "*" in action or "?" in action


def sub_string(node: Any) -> Any:
    if isinstance(node, dict) and "Fn::Sub" in node:
        sub = node["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return node


# ----------------------------------------------------------------------------- deployments
# The template as CloudFormation deploys it for given parameter values: conditions decided,
# Fn::If, Fn::Join, Fn::Split, Fn::Sub and AWS::NoValue resolved, resources whose condition
# is false left out. A resource's Ref becomes "ref:<id>" and its GetAtt "<id>.<attr>".

ACCOUNT = "123456789012"
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": "us-east-1", "AWS::Partition": "aws",
          "AWS::StackName": "connect-identity-sync"}
_NO_VALUE = object()

# Parameter values of a deployment that names every optional sender and a queue key.
UNNAMED_SENDER = f"arn:aws:iam::{ACCOUNT}:role/developer"
NAMED_PUBLISHER = f"arn:aws:iam::{ACCOUNT}:role/scim-bridge"
REDRIVE_OPERATOR = f"arn:aws:iam::{ACCOUNT}:role/operations"
QUEUE_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
FULL_PARAMETERS = {
    "SourceQueuePublisherArns": NAMED_PUBLISHER,
    "RedriveOperatorArns": REDRIVE_OPERATOR,
    "QueueKmsKeyArn": QUEUE_KEY,
}


def instantiate(t: dict, **values: str) -> dict:
    """The template deployed with `values` (parameter name -> value as given to
    CloudFormation), the other parameters at their defaults."""
    params = {}
    for name, p in t.get("Parameters", {}).items():
        raw = values.get(name, p.get("Default"))
        params[name] = raw.split(",") if p.get("Type") == "CommaDelimitedList" and raw is not None else raw
    conditions: dict[str, bool] = {}

    def condition(name: str) -> bool:
        if name not in conditions:
            conditions[name] = bool(value(t["Conditions"][name]))
        return conditions[name]

    def sub(text: str, extra: dict) -> str:
        def one(m: re.Match) -> str:
            name = m.group(1)
            if name in extra:
                return str(value(extra[name]))
            if "." in name:
                return "{}.{}".format(*name.split(".", 1))
            return str(value({"Ref": name}))
        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def value(node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in map(value, node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                if arg in PSEUDO:
                    return PSEUDO[arg]
                return params[arg] if arg in params else f"ref:{arg}"
            if key == "Fn::GetAtt":
                target = arg.split(".", 1) if isinstance(arg, str) else arg
                return f"{target[0]}.{target[1]}"
            if key == "Fn::If":
                return value(arg[1] if condition(arg[0]) else arg[2])
            if key == "Condition":
                return condition(arg)
            if key == "Fn::Equals":
                a, b = value(arg)
                return a == b
            if key == "Fn::Not":
                return not value(arg[0])
            if key == "Fn::And":
                return all(value(arg))
            if key == "Fn::Or":
                return any(value(arg))
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in value(items))
            if key == "Fn::Split":
                sep, text = value(arg)
                return text.split(sep)
            if key == "Fn::Sub":
                return sub(arg, {}) if isinstance(arg, str) else sub(arg[0], arg[1])
        return {k: v for k, v in ((k, value(v)) for k, v in node.items()) if v is not _NO_VALUE}

    out = {k: v for k, v in t.items() if k not in ("Resources", "Outputs", "Conditions")}
    out["Resources"] = {
        lid: value({k: v for k, v in res.items() if k != "Condition"})
        for lid, res in t.get("Resources", {}).items()
        if "Condition" not in res or condition(res["Condition"])
    }
    return out


def deployments(t: dict) -> Iterator[tuple[dict, dict]]:
    """(parameter values, deployed template): the defaults, and every optional sender
    named with a customer-managed queue key."""
    yield {}, instantiate(t)
    yield FULL_PARAMETERS, instantiate(t, **FULL_PARAMETERS)


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), text) is not None


def _condition_holds(condition: dict, keys: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        base = operator.removesuffix("IfExists")
        assert not base.startswith(("ForAnyValue", "ForAllValues")), f"{operator} is not evaluated here"
        negated = "Not" in base
        for key, wanted in tests.items():
            if key not in keys:
                # A missing key: ...IfExists and negated operators hold, the others do not.
                if operator.endswith("IfExists") or negated:
                    continue
                return False
            have = keys[key]
            if base.startswith("Bool"):
                hit = any(str(w).lower() == have for w in as_list(wanted))
            elif base.endswith("Like") or base.startswith("Arn"):
                hit = any(_matches(str(w), have) for w in as_list(wanted))
            elif base.startswith("StringEquals") or base.startswith("StringNotEquals"):
                hit = have in [str(w) for w in as_list(wanted)]
            else:
                raise AssertionError(f"{operator} is not evaluated here")
            if hit == negated:
                return False
    return True


def _principal_matches(principal: Any, caller: str) -> bool:
    if principal == "*":
        return True
    assert isinstance(principal, dict), f"principal {principal!r}"
    if caller.startswith("service:"):
        return caller.removeprefix("service:") in as_list(principal.get("Service", []))
    arns = as_list(principal.get("AWS", []))
    return "*" in arns or caller in arns or f"arn:aws:iam::{ACCOUNT}:root" in arns or ACCOUNT in arns


def queue_policy_decision(d: dict, queue: str, caller: str, action: str, keys: dict[str, str]) -> str:
    """What the policies of `queue` in the deployed template `d` say to a request:
    "deny", "allow", or "none" (the caller's own IAM policy then decides, for a principal
    of the account; a service is refused). `caller` is an IAM principal ARN or
    "service:<name>"."""
    decision = "none"
    for res in resources(d, "AWS::SQS::QueuePolicy").values():
        if f"ref:{queue}" not in res["Properties"]["Queues"]:
            continue
        for st in as_list(res["Properties"]["PolicyDocument"].get("Statement", [])):
            assert "NotPrincipal" not in st and "NotAction" not in st, "NotPrincipal/NotAction are not evaluated here"
            if not _principal_matches(st.get("Principal"), caller):
                continue
            if not any(_matches(a.lower(), action.lower()) for a in actions(st)):
                continue
            if not _condition_holds(st.get("Condition", {}), keys):
                continue
            if st.get("Effect") == "Deny":
                return "deny"
            decision = "allow"
    return decision


def iam_request(principal: str, secure: bool = True) -> tuple[str, dict[str, str]]:
    return principal, {"aws:PrincipalArn": principal, "aws:PrincipalAccount": ACCOUNT,
                       "aws:SecureTransport": str(secure).lower()}


def service_request(service: str, source_arn: str, secure: bool = True) -> tuple[str, dict[str, str]]:
    return f"service:{service}", {"aws:SourceArn": source_arn, "aws:PrincipalServiceName": service,
                                   "aws:SecureTransport": str(secure).lower()}


# ----------------------------------------------------------------------------- checks: IAM


def check_no_wildcard_action_for_connect_or_sqs(t: dict) -> None:
    for where, st in statements(t):
        assert "NotAction" not in st, f"{where}: NotAction allows everything else"
        for a in actions(st):
            if a == "*" or a.lower().startswith(("connect:", "sqs:", "dynamodb:")):
                assert not is_wildcard_action(a), f"{where} {st.get('Sid')}: wildcard action {a!r}"


def check_no_connect_or_sqs_statement_on_every_resource(t: dict) -> None:
    for where, st in statements(t):
        if not any(a == "*" or a.lower().startswith(("connect:", "sqs:", "dynamodb:")) for a in actions(st)):
            continue
        assert "NotResource" not in st, f"{where} {st.get('Sid')}: NotResource"
        for r in as_list(st.get("Resource")):
            r = sub_string(r)
            assert r != "*", f"{where} {st.get('Sid')}: Resource \"*\""
            if isinstance(r, str):
                assert not r.endswith((":*", ":instance/*")), f"{where} {st.get('Sid')}: resource {r!r} covers every instance or queue"


def check_connect_actions_are_exactly_the_five_used(t: dict) -> None:
    role = function_role(t)
    granted = {a for st in role_statements(t, role) for a in actions(st) if a.lower().startswith("connect:")}
    assert granted == CONNECT_ACTIONS, f"Connect actions granted {sorted(granted)}, expected {sorted(CONNECT_ACTIONS)}"


def check_connect_actions_only_on_the_configured_instance(t: dict) -> None:
    seen = set()
    for where, st in statements(t):
        for a in actions(st):
            if not a.lower().startswith("connect:"):
                continue
            res = {sub_string(r) for r in as_list(st.get("Resource"))}
            allowed = CONNECT_SCOPE.get(a, set())
            assert res <= allowed, f"{where} {st.get('Sid')}: {a} on {sorted(map(str, res))}, allowed only {sorted(allowed)}"
            seen.add(a)
    assert seen == CONNECT_ACTIONS, f"Connect actions seen {sorted(seen)}"


def check_send_message_only_on_dead_letter_queues_and_the_source_queue(t: dict) -> None:
    """The function sends to the per-class dead-letter queues and, to queue a deferred
    record again as a fresh copy, to its source queue; never to the catch-all."""
    role = function_role(t)
    allowed = set(class_dlqs(t).values()) | {SOURCE_QUEUE}
    granted = set()
    for st in role_statements(t, role):
        if any(a.lower() == "sqs:sendmessage" for a in actions(st)):
            for r in as_list(st.get("Resource")):
                target = ref_target(r)
                assert target in allowed, (
                    f"sqs:SendMessage granted on {r!r}, which is neither a per-class dead-letter queue nor the source queue"
                )
                granted.add(target)
    assert granted == allowed, f"sqs:SendMessage missing on {sorted(allowed - granted)}"


def check_polling_only_on_the_source_queue(t: dict) -> None:
    role = function_role(t)
    poll = {"sqs:receivemessage", "sqs:deletemessage", "sqs:getqueueattributes"}
    found = set()
    for st in role_statements(t, role):
        acts = {a.lower() for a in actions(st)}
        if acts & poll:
            targets = {ref_target(r) for r in as_list(st.get("Resource"))}
            assert targets == {SOURCE_QUEUE}, f"queue polling granted on {sorted(map(str, targets))}"
            found |= acts & poll
    assert found == poll, f"the function cannot poll its source queue: missing {sorted(poll - found)}"


def check_role_statements_only_allow_what_the_function_uses(t: dict) -> None:
    role = function_role(t)
    used = CONNECT_ACTIONS | {
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        # Only with QueueKmsKeyArn (check_a_queue_key_is_usable_by_every_role_that_reads_or_writes_the_queues).
        "kms:Decrypt",
        "kms:GenerateDataKey",
    } | DYNAMODB_ACTIONS
    for _, d in deployments(t):
        for st in role_statements(d, role):
            for a in actions(st):
                assert a in used, f"the function role allows {a!r}, which the function does not use"
    assert not props(t, role).get("ManagedPolicyArns"), "managed policies on the function role"


def check_deployed_role_has_no_managed_policy(transformed: dict) -> None:
    """After the SAM transform: SAM attaches nothing (AWSLambdaSQSQueueExecutionRole and
    AWSLambdaBasicExecutionRole both apply to Resource "*")."""
    fn = [v for v in resources(transformed, "AWS::Lambda::Function").values()]
    assert len(fn) == 2, "the function and the SCIM endpoint"
    for lid, res in resources(transformed, "AWS::IAM::Role").items():
        arns = res["Properties"].get("ManagedPolicyArns", [])
        assert not arns, f"{lid} carries managed policies {arns}"
    for f in fn:
        role = ref_target(f["Properties"]["Role"])
        assert role in resources(transformed, "AWS::IAM::Role"), "a deployed function does not use the template's role"


# ----------------------------------------------------------------------------- checks: queues


def check_every_queue_is_encrypted(t: dict) -> None:
    assert queues(t), "no queues"
    for params, d in deployments(t):
        key = params.get("QueueKmsKeyArn")
        for lid, q in queues(d).items():
            p = q.get("Properties", {})
            if key:
                assert p.get("KmsMasterKeyId") == key, f"{lid} is not encrypted with QueueKmsKeyArn"
                assert p.get("SqsManagedSseEnabled") is not True, f"{lid} asks for SSE-SQS and a KMS key at once"
            else:
                assert p.get("SqsManagedSseEnabled") is True or p.get("KmsMasterKeyId"), f"{lid} is not encrypted at rest"
                assert p.get("SqsManagedSseEnabled") is not False or p.get("KmsMasterKeyId"), f"{lid} turns encryption off"


def check_a_queue_key_is_usable_by_every_role_that_reads_or_writes_the_queues(t: dict) -> None:
    """With QueueKmsKeyArn set, the roles that poll, dead-letter and redrive may use that
    key and no other; without it, no role holds a KMS permission."""
    kms = {"kms:Decrypt", "kms:GenerateDataKey"}
    for params, d in deployments(t):
        key = params.get("QueueKmsKeyArn")
        roles = resources(d, "AWS::IAM::Role")
        for role in roles:
            granted = {}
            for st in role_statements(d, role):
                for a in actions(st):
                    if a.lower().startswith("kms:"):
                        granted.setdefault(a, set()).update(map(str, as_list(st.get("Resource"))))
            if not key:
                assert not granted, f"{role} holds {sorted(granted)} without a queue key"
                continue
            assert set(granted) == kms, f"{role}: KMS actions {sorted(granted)}, expected {sorted(kms)}"
            for a, res in granted.items():
                assert res == {key}, f"{role}: {a} on {sorted(res)}, not the queue key alone"


def check_dead_letter_queues_keep_messages_fourteen_days(t: dict) -> None:
    for lid in dead_letter_queues(t):
        days = as_int(t, props(t, lid).get("MessageRetentionPeriod", 345600)) / 86400
        assert days == 14, f"{lid} keeps messages {days} days, not 14"


def check_queues_outlive_the_stack(t: dict) -> None:
    for lid, q in queues(t).items():
        assert q.get("DeletionPolicy") == "Retain", f"{lid} would be deleted with its messages"
        assert q.get("UpdateReplacePolicy") == "Retain", f"{lid} would be replaced without its messages"


def check_visibility_timeout_is_six_function_timeouts(t: dict) -> None:
    vt = as_int(t, props(t, SOURCE_QUEUE).get("VisibilityTimeout", 30))
    assert vt >= 6 * function_timeout(t), f"visibility timeout {vt}s < 6 x function timeout {function_timeout(t)}s"


def check_redrive_comes_after_the_function_gives_up(t: dict) -> None:
    redrive = props(t, SOURCE_QUEUE)["RedrivePolicy"]
    max_receive = as_int(t, redrive["maxReceiveCount"])
    fn_max = as_int(t, function_env(t).get("MAX_RECEIVE_COUNT", 3))
    assert max_receive > fn_max, f"SQS redrives at {max_receive} receives, the function at {fn_max}"
    # Room for records handed back for the deadline, FIFO order or a failed dead-letter send.
    assert max_receive - fn_max >= 2, f"margin {max_receive - fn_max} between maxReceiveCount and MAX_RECEIVE_COUNT"
    assert redrive_target(t) not in class_dlqs(t).values(), "the redrive target is also a per-class queue"


def check_every_failure_class_has_its_own_queue(t: dict) -> None:
    env = function_env(t)
    missing = [v for v in DLQ_VARIABLES if v not in env]
    assert not missing, f"unset: {missing}"
    targets = class_dlqs(t)
    for var, lid in targets.items():
        assert lid in queues(t), f"{var} does not name a queue of this template ({env[var]!r})"
        assert lid != SOURCE_QUEUE, f"{var} names the source queue"
    assert len(set(targets.values())) == len(DLQ_VARIABLES), "two classes share a queue"


def check_every_dead_letter_queue_has_an_alarm(t: dict) -> None:
    alarmed = {}
    for lid, a in resources(t, "AWS::CloudWatch::Alarm").items():
        p = a["Properties"]
        if p.get("Namespace") != "AWS/SQS" or p.get("MetricName") != "ApproximateNumberOfMessagesVisible":
            continue
        for d in p.get("Dimensions", []):
            if d.get("Name") == "QueueName":
                alarmed[ref_target(d.get("Value"))] = p
    for q in sorted(dead_letter_queues(t)):
        assert q in alarmed, f"no alarm on dead-letter queue {q}"
        p = alarmed[q]
        assert p.get("ComparisonOperator") == "GreaterThanThreshold" and float(p.get("Threshold")) == 0, (
            f"the alarm on {q} does not fire on the first message"
        )
        assert p.get("TreatMissingData", "missing") in ("notBreaching", "missing")
        assert "AlarmActions" in p, f"the alarm on {q} notifies no one, even with AlarmTopicArn set"


# ----------------------------------------------------------------------------- checks: function


def check_function_build(t: dict) -> None:
    fn = t["Resources"][FUNCTION]
    p = fn["Properties"]
    assert t.get("Transform") == "AWS::Serverless-2016-10-31" or "AWS::Serverless-2016-10-31" in as_list(t.get("Transform"))
    assert p.get("Runtime") == "provided.al2023"
    assert p.get("Architectures") == ["arm64"]
    assert p.get("Handler") == "bootstrap"
    assert p.get("CodeUri") == "."
    assert fn.get("Metadata", {}).get("BuildMethod") == "rust-cargolambda"
    assert fn["Metadata"].get("BuildProperties", {}).get("Binary") == "connect-identity-sync"


def check_event_source_reports_failures_and_bounds_concurrency(t: dict) -> None:
    ev = sqs_event(t)
    assert ref_target(ev.get("Queue")) == SOURCE_QUEUE
    assert "ReportBatchItemFailures" in ev.get("FunctionResponseTypes", []), "a failed record would fail the whole batch"
    mc = ev.get("ScalingConfig", {}).get("MaximumConcurrency")
    assert mc is not None, "no MaximumConcurrency: nothing bounds how many containers share Connect's quota"
    assert 2 <= as_int(t, mc) <= 1000
    assert 1 <= as_int(t, ev.get("BatchSize", 10)) <= 10


def share_terms(node: Any) -> tuple[Any, Any]:
    """(quota, containers) of a CONNECT_RPS_* value: "Q/N" or "Q/N1+N2" in an Fn::Sub (each a
    ${Parameter} or a number; the containers as the list of the terms they add up), else the
    value itself over 1 container."""
    if isinstance(node, dict) and set(node) == {"Fn::Sub"}:
        text = node["Fn::Sub"]
        assert isinstance(text, str), f"Fn::Sub with variables of its own: {node!r}"
        parts = text.split("/")
        assert len(parts) == 2, f"{text!r} is not quota/containers"

        def term(part: str) -> Any:
            m = re.fullmatch(r"\$\{(\w+)\}", part.strip())
            return {"Ref": m.group(1)} if m else float(part)

        return term(parts[0]), [term(c) for c in parts[1].split("+")]
    return node, [1]


def values_of(t: dict, node: Any) -> list[float]:
    """Every value an operator can give node that matters at the edges: a parameter's
    MinValue, Default and MaxValue (or its AllowedValues), or a literal."""
    if isinstance(node, dict) and set(node) == {"Ref"} and node["Ref"] in t.get("Parameters", {}):
        p = t["Parameters"][node["Ref"]]
        if "AllowedValues" in p:
            return [float(v) for v in p["AllowedValues"]]
        return [float(p[k]) for k in ("MinValue", "Default", "MaxValue") if k in p]
    value = resolve(t, node)
    assert value is not None, f"{node!r} has no value"
    return [float(value)]


def default_of(t: dict, node: Any) -> float:
    return float(resolve(t, node))


def container_rate(t: dict, var: str) -> float:
    """A container's rate for var with every parameter at its default."""
    quota, containers = share_terms(function_env(t)[var])
    return default_of(t, quota) / sum(default_of(t, c) for c in containers)


def scim_env(t: dict) -> dict:
    return props(t, SCIM_FUNCTION).get("Environment", {}).get("Variables", {})


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return {node["Ref"]}
    return set()


def check_connect_quota_is_shared_not_exceeded(t: dict) -> None:
    """For ANY MaximumConcurrency (and SCIM endpoint concurrency) the template allows, the
    containers' shares add up to no more than the quota the operator states for this stack,
    which in turn stays within Connect's default account quota; and each share is one the
    function and the endpoint accept. The endpoint's containers (its reserved concurrency)
    take their shares of the same read quotas as the function's."""
    env, senv = function_env(t), scim_env(t)
    mc_node = sqs_event(t)["ScalingConfig"]["MaximumConcurrency"]
    sc_node = props(t, SCIM_FUNCTION).get("ReservedConcurrentExecutions")
    assert sc_node is not None, "the SCIM endpoint's concurrency is unbounded: its shares would not add up"
    for var, connect_quota in CONNECT_QUOTA_RPS.items():
        assert var in env, f"{var} unset: each container would use the whole quota"
        quota_node, containers = share_terms(env[var])
        stated = default_of(t, quota_node)
        assert stated <= connect_quota, (
            f"{var}: the stack is given {stated} rps by default, above Connect's quota {connect_quota}"
        )
        users = [(mc_node, containers)]
        if var != "CONNECT_RPS_UPDATE":
            assert var in senv, f"the SCIM endpoint has no {var}: each of its containers would use the whole quota"
            squota, scontainers = share_terms(senv[var])
            assert squota == quota_node, f"{var}: the endpoint's share is of {squota!r}, not {quota_node!r}"
            users.append((sc_node, scontainers))
        else:
            assert var not in senv, "the SCIM endpoint never updates: it needs no update share"
        names = sorted(set().union(*(_refs(n) for n, cs in users for n in [n, *cs])))
        grid = [dict(zip(names, vals)) for vals in itertools.product(*(values_of(t, {"Ref": n}) for n in names))]

        def ev(node: Any, combo: dict) -> float:
            refs = _refs(node)
            return combo[next(iter(refs))] if refs else default_of(t, node)

        for combo in grid:
            total = sum(ev(count, combo) * stated / sum(ev(c, combo) for c in cs) for count, cs in users)
            assert total <= stated + 1e-9 and total <= connect_quota + 1e-9, (
                f"{var}: with {combo} the containers ask for {total:g} rps, above the quota ({min(stated, connect_quota):g})"
            )
            for quota in values_of(t, quota_node):
                for _, cs in users:
                    rate = quota / sum(ev(c, combo) for c in cs)
                    if var == "CONNECT_RPS_LIST" and rate == 0:
                        continue  # 0 turns the username index off
                    assert rate >= FUNCTION_MIN_RATE, (
                        f"{var}: {quota:g} over {combo} = {rate:g} rps a container, below the "
                        f"{FUNCTION_MIN_RATE} the function accepts: it would not start"
                    )


def check_the_fleet_keeps_one_update_rate_within_the_stacks_quota(t: dict) -> None:
    """The fleet's one update rate (CONNECT_FLEET_RPS_UPDATE, kept in the watermark table)
    is the quota the operator states for this stack, never more, whatever the concurrency;
    and the table it is kept in is the function's."""
    env = function_env(t)
    fleet = env.get("CONNECT_FLEET_RPS_UPDATE")
    assert fleet is not None, "no fleet rate: each container climbs back to its share on its own"
    assert ref_target(fleet) == "ConnectQuotaUpdate", (
        f"CONNECT_FLEET_RPS_UPDATE is {fleet!r}, not the stack's stated update quota"
    )
    stated = default_of(t, fleet)
    assert stated <= CONNECT_QUOTA_RPS["CONNECT_RPS_UPDATE"], (
        f"the fleet's update rate {stated} is above Connect's quota"
    )
    assert ref_target(env.get("WATERMARK_TABLE")) == WATERMARK_TABLE, (
        "the fleet's rate is kept in the watermark table, which the function must name"
    )


def check_a_batch_fits_in_the_timeout(t: dict) -> None:
    ev = sqs_event(t)
    batch = as_int(t, ev.get("BatchSize", 10))
    rps = container_rate(t, "CONNECT_RPS_UPDATE")
    # One update per record at the container's update rate, with half the timeout spare.
    assert batch / rps <= function_timeout(t) / 2, f"{batch} updates at {rps}/s do not fit in {function_timeout(t)}s"


def check_defaults_refuse(t: dict) -> None:
    env = function_env(t)
    params = t.get("Parameters", {})
    assert ref_target(env.get("DEFAULT_INSTANCE_ID")) == "ConnectInstanceId"
    assert ref_target(env.get("ALLOWED_INSTANCE_IDS")) == "ConnectInstanceId", "ALLOWED_INSTANCE_IDS must be the one instance the role covers"
    assert "Default" not in params["ConnectInstanceId"], "the instance must be chosen, not defaulted"
    assert re.fullmatch(params["ConnectInstanceId"]["AllowedPattern"], "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
    for bad in ("*", "", "arn:aws:connect:us-east-1:123456789012:instance/*"):
        assert not re.fullmatch(params["ConnectInstanceId"]["AllowedPattern"], bad), f"instance id {bad!r} accepted"
    assert ref_target(env.get("EMAIL_DOMAIN_ALLOWLIST")) == "EmailDomainAllowlist"
    assert ref_target(env.get("SECONDARY_EMAIL_DOMAIN_ALLOWLIST")) == "SecondaryEmailDomainAllowlist", (
        "the deployment cannot restrict SecondaryEmail's domains"
    )
    assert params["EmailDomainAllowlist"].get("Default", "") == "", "Email changes must be refused until domains are listed"
    assert ref_target(env.get("PROTECTED_SECURITY_PROFILE_IDS")) == "ProtectedSecurityProfileIds"
    trusted = env.get("TRUSTED_SOURCES")
    assert isinstance(trusted, dict) and "Fn::If" in trusted, "TRUSTED_SOURCES must fall back to the rule's source"
    assert {ref_target(x) for x in trusted["Fn::If"][1:]} == {"TrustedSources", "EventSource"}


def check_logs_are_json_in_an_explicit_group(t: dict) -> None:
    p = props(t, FUNCTION)
    env = function_env(t)
    assert env.get("AWS_LAMBDA_LOG_FORMAT") == "JSON"
    lc = p.get("LoggingConfig", {})
    assert lc.get("LogFormat") == "JSON"
    group = ref_target(lc.get("LogGroup"))
    assert group in resources(t, "AWS::Logs::LogGroup"), "the function does not log to the template's log group"
    assert props(t, group).get("RetentionInDays") is not None, "logs kept forever"


AL2023_CA_BUNDLE = "/etc/pki/tls/certs/ca-bundle.crt"


def check_no_ca_bundle_is_read(t: dict) -> None:
    assert "SSL_CERT_FILE" not in function_env(t), (
        "with SSL_CERT_FILE the HTTPS client reads that CA bundle at start-up and trusts every root in it, "
        "instead of the compiled-in roots of Amazon Trust Services"
    )


# ----------------------------------------------------------------------------- checks: staleness guard


def check_watermark_table_is_on_demand_encrypted_recoverable_and_expiring(t: dict) -> None:
    tables = resources(t, "AWS::DynamoDB::Table")
    assert set(tables) == {WATERMARK_TABLE}, f"tables {sorted(tables)}"
    p = props(t, WATERMARK_TABLE)
    assert p.get("BillingMode") == "PAY_PER_REQUEST", "provisioned capacity would throttle bursts of changes"
    assert p.get("KeySchema") == [{"AttributeName": "pk", "KeyType": "HASH"}], "the key is pk alone (SPEC 2.5)"
    assert {"AttributeName": "pk", "AttributeType": "S"} in p.get("AttributeDefinitions", []), "pk must be a String"
    assert p.get("SSESpecification", {}).get("SSEEnabled") is True, "the table is not encrypted with a KMS key"
    assert p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True, "no point-in-time recovery"
    ttl = p.get("TimeToLiveSpecification", {})
    assert ttl.get("Enabled") is True, "items never expire"
    assert ttl.get("AttributeName") == WATERMARK_EXPIRY_ATTRIBUTE, f"TTL on {ttl.get('AttributeName')!r}, the function writes {WATERMARK_EXPIRY_ATTRIBUTE!r}"


def check_function_uses_the_watermark_table(t: dict) -> None:
    assert ref_target(function_env(t).get("WATERMARK_TABLE")) == WATERMARK_TABLE, "WATERMARK_TABLE does not name the table: no staleness guard"


def check_watermarks_outlive_every_message_that_can_come_back(t: dict) -> None:
    env = function_env(t)
    days = as_int(t, env.get("WATERMARK_TTL_DAYS", 28))
    source = as_int(t, props(t, SOURCE_QUEUE).get("MessageRetentionPeriod", 345600))
    longest_dlq = max(as_int(t, props(t, q).get("MessageRetentionPeriod", 345600)) for q in dead_letter_queues(t))
    assert days * 86400 >= source + longest_dlq, (
        f"watermarks expire after {days} days; a change can come back for {(source + longest_dlq) / 86400} days"
    )


def check_dynamodb_item_updates_only_on_the_watermark_table(t: dict) -> None:
    granted = set()
    for where, st in statements(t):
        for a in actions(st):
            if not a.lower().startswith("dynamodb:"):
                continue
            assert a in DYNAMODB_ACTIONS, f"{where} {st.get('Sid')}: {a} is not used by the function"
            targets = {ref_target(r) for r in as_list(st.get("Resource"))}
            assert targets == {WATERMARK_TABLE}, f"{where} {st.get('Sid')}: {a} on {sorted(map(str, targets))}"
            for r in as_list(st.get("Resource")):
                assert isinstance(r, dict) and r.get("Fn::GetAtt") in ([WATERMARK_TABLE, "Arn"], f"{WATERMARK_TABLE}.Arn"), (
                    f"{where}: {a} on {r!r}, not the table's ARN"
                )
            granted.add(a)
    assert granted == DYNAMODB_ACTIONS, f"the function cannot {sorted(DYNAMODB_ACTIONS - granted)}"


def check_watermark_table_throttles_raise_an_alarm(t: dict) -> None:
    found = []
    for lid, a in resources(t, "AWS::CloudWatch::Alarm").items():
        p = a["Properties"]
        if p.get("Namespace") != "AWS/DynamoDB" or p.get("MetricName") not in ("WriteThrottleEvents", "ThrottledRequests"):
            continue
        if WATERMARK_TABLE not in {ref_target(d.get("Value")) for d in p.get("Dimensions", []) if d.get("Name") == "TableName"}:
            continue
        assert p.get("ComparisonOperator") == "GreaterThanThreshold" and float(p.get("Threshold")) == 0, f"{lid} waits for more than one throttle"
        assert p.get("Statistic") == "Sum", f"{lid}: throttles are counted with Sum"
        assert "AlarmActions" in p, f"{lid} notifies no one"
        found.append(lid)
    assert found, "no alarm on the watermark table's throttles"


# ----------------------------------------------------------------------------- checks: EventBridge


def check_rule_filters_and_targets_the_source_queue(t: dict) -> None:
    rules = resources(t, "AWS::Events::Rule")
    assert len(rules) == 1
    (lid, rule), = rules.items()
    p = rule["Properties"]
    assert ref_target(p.get("EventBusName")) == "EventBusName"
    pattern = p["EventPattern"]
    assert [ref_target(x) for x in pattern.get("source", [])] == ["EventSource"]
    assert [ref_target(x) for x in pattern.get("detail-type", [])] == ["EventDetailType"]
    targets = [ref_target(x["Arn"]) for x in p["Targets"]]
    assert targets == [SOURCE_QUEUE], f"rule targets {targets}"


def check_source_queue_refuses_every_sender_it_does_not_name(t: dict) -> None:
    """SPEC section 5: a bare document carries no source, so the source queue's policy
    decides who may send one: the rule, the function's own role, the redrive role and the named publishers; every
    other principal is refused by an explicit deny, whatever its own IAM policy allows
    (a developer role with sqs:*)."""
    send = "sqs:SendMessage"
    rule_arn = f"{next(iter(resources(t, 'AWS::Events::Rule')))}.Arn"
    for params, d in deployments(t):
        decide = lambda req: queue_policy_decision(d, SOURCE_QUEUE, req[0], send, req[1])
        assert decide(service_request("events.amazonaws.com", rule_arn)) == "allow", (
            f"{params}: the EventBridge rule cannot deliver to the source queue"
        )
        refused = [
            iam_request(UNNAMED_SENDER),
            iam_request(f"arn:aws:iam::{ACCOUNT}:root"),
            service_request("events.amazonaws.com", f"arn:aws:events:us-east-1:{ACCOUNT}:rule/another-rule"),
            service_request("sns.amazonaws.com", f"arn:aws:sns:us-east-1:{ACCOUNT}:a-topic"),
        ]
        if not params:
            refused += [iam_request(NAMED_PUBLISHER), iam_request(REDRIVE_OPERATOR)]
        for caller, keys in refused:
            assert decide((caller, keys)) == "deny", f"{params}: {caller} may send to the source queue"
        # The function queues its deferred records again (SPEC 2.4): its own role is named.
        assert decide(iam_request(f"{function_role(t)}.Arn")) != "deny", (
            f"{params}: the function cannot queue a deferred record again"
        )
        if params:
            assert decide(iam_request(NAMED_PUBLISHER)) == "allow", f"{params}: a named publisher cannot send"
            roles = resources(d, "AWS::IAM::Role")
            assert "RedriveRole" in roles, "no redrive role although RedriveOperatorArns names its operators"
            trust = as_list(roles["RedriveRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"])
            assert [st.get("Principal") for st in trust] == [{"AWS": [REDRIVE_OPERATOR]}], (
                f"the redrive role trusts {trust}, not RedriveOperatorArns alone"
            )
            assert decide(iam_request("RedriveRole.Arn")) != "deny", "the redrive role cannot send back to the source queue"
        else:
            assert "RedriveRole" not in resources(d, "AWS::IAM::Role"), "a redrive role nobody was named to use"


def rule_dead_letter_queues(t: dict) -> set[str]:
    """The queues the EventBridge rule sends an event it could not deliver to."""
    return {
        ref_target(target["DeadLetterConfig"]["Arn"])
        for rule in resources(t, "AWS::Events::Rule").values()
        for target in rule["Properties"].get("Targets", [])
        if "DeadLetterConfig" in target
    }


def check_dead_letter_queues_refuse_every_sender_but_their_own(t: dict) -> None:
    """SPEC section 5: a message planted in a dead-letter queue would be sent back to the
    source queue by a redrive, as the trusted redrive role, and applied. So each
    dead-letter queue refuses, by an explicit deny whatever the sender's own IAM policy
    allows, every sender but those that dead-letter into it: the function's role for the
    per-class queues, the EventBridge rule for the queue its target dead-letters to. (The
    source queue's own redrive is SQS moving the message, no sender.)"""
    send = "sqs:SendMessage"
    rule_id = next(iter(resources(t, "AWS::Events::Rule")))
    rule_arn = f"{rule_id}.Arn"
    function = f"{function_role(t)}.Arn"
    by_function = set(class_dlqs(t).values())
    by_rule = rule_dead_letter_queues(t)
    everyone = {
        "the function's role": iam_request(function),
        "the EventBridge rule": service_request("events.amazonaws.com", rule_arn),
        "a developer role": iam_request(UNNAMED_SENDER),
        "a named publisher": iam_request(NAMED_PUBLISHER),
        "a redrive operator": iam_request(REDRIVE_OPERATOR),
        "the redrive role": iam_request("RedriveRole.Arn"),
        "the account's root": iam_request(f"arn:aws:iam::{ACCOUNT}:root"),
        "another EventBridge rule": service_request(
            "events.amazonaws.com", f"arn:aws:events:us-east-1:{ACCOUNT}:rule/another-rule"),
        "an SNS topic": service_request("sns.amazonaws.com", f"arn:aws:sns:us-east-1:{ACCOUNT}:a-topic"),
    }
    for params, d in deployments(t):
        for q in sorted(dead_letter_queues(t) | by_rule):
            senders = set()
            if q in by_function:
                senders.add("the function's role")
            if q in by_rule:
                senders.add("the EventBridge rule")
            for who, (caller, keys) in everyone.items():
                got = queue_policy_decision(d, q, caller, send, keys)
                if who not in senders:
                    # A principal of the account needs the deny (its own IAM policy may
                    # allow the send); a service is refused unless the queue allows it.
                    refused = got != "allow" if caller.startswith("service:") else got == "deny"
                    assert refused, f"{params}: {q} lets {who} send ({got})"
                elif caller.startswith("service:"):
                    # A service principal needs the queue's own allow.
                    assert got == "allow", f"{params}: {who} cannot dead-letter into {q} ({got})"
                else:
                    assert got != "deny", f"{params}: {who} cannot dead-letter into {q}"


def check_every_queue_refuses_plain_http(t: dict) -> None:
    """Every queue denies every request that does not come over TLS
    (aws:SecureTransport false), whoever makes it: the dead-letter queues hold personal data."""
    rule_arn = f"{next(iter(resources(t, 'AWS::Events::Rule')))}.Arn"
    callers = [
        iam_request(UNNAMED_SENDER, secure=False),
        iam_request(NAMED_PUBLISHER, secure=False),
        iam_request(f"{function_role(t)}.Arn", secure=False),
        iam_request("RedriveRole.Arn", secure=False),
        service_request("events.amazonaws.com", rule_arn, secure=False),
    ]
    for params, d in deployments(t):
        for q in queues(d):
            for caller, keys in callers:
                for action in ("sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
                    got = queue_policy_decision(d, q, caller, action, keys)
                    assert got == "deny", f"{params}: {q} lets {caller} {action} over plain HTTP ({got})"


def check_outputs(t: dict) -> None:
    outputs = t.get("Outputs", {})
    values = {ref_target(o.get("Value")) for o in outputs.values()}
    assert FUNCTION in values, "no function ARN output"
    for q in queues(t):
        assert q in values, f"no output for queue {q}"


# ----------------------------------------------------------------------------- checks: metrics (SPEC section 7)

# The ErrorClass and Operation dimension values the function's metrics carry.
ERROR_CLASSES = (
    "MalformedEvent",
    "ValidationError",
    "PolicyViolation",
    "InvalidRequestException",
    "InvalidParameterException",
    "ResourceNotFoundException",
    "ThrottlingException",
    "InternalServiceException",
    "UnknownError",
)
OPERATIONS = ("UpdateUserIdentityInfo", "DescribeUser", "SearchUsers", "DescribeInstance", "ListUsers")
OUTCOMES = ("Updated", "Unchanged", "HandedBack", "DeadLettered")
NAMESPACE_PARAMETER = "MetricsNamespace"


def metric_alarms(t: dict, metric: str, dimension: str) -> dict[str, dict]:
    """Dimension value -> properties of the alarms on the function's `metric`."""
    found = {}
    for a in resources(t, "AWS::CloudWatch::Alarm").values():
        p = a["Properties"]
        if p.get("MetricName") != metric or ref_target(p.get("Namespace")) != NAMESPACE_PARAMETER:
            continue
        for d in p.get("Dimensions", []):
            if d.get("Name") == dimension:
                found[d.get("Value")] = p
    return found


def dashboard_metrics(t: dict) -> set[tuple]:
    """(namespace, metric, dimension name, dimension value) of every dashboard graph line."""
    boards = resources(t, "AWS::CloudWatch::Dashboard")
    assert len(boards) == 1, f"expected one dashboard, found {len(boards)}"
    body = sub_string(next(iter(boards.values()))["Properties"]["DashboardBody"])
    assert isinstance(body, str), "the dashboard body is not a Fn::Sub string"
    parsed = json.loads(body)
    lines = set()
    for w in parsed["widgets"]:
        for m in w.get("properties", {}).get("metrics", []):
            plain = [x for x in m if isinstance(x, str)]
            if not plain:
                continue  # a metric-math expression over the lines above
            lines.add(tuple(plain[:4]) + (None,) * (4 - len(plain[:4])))
    return lines


def check_metrics_go_to_the_configured_namespace(t: dict) -> None:
    env = function_env(t)
    assert ref_target(env.get("METRICS_NAMESPACE")) == NAMESPACE_PARAMETER, (
        "METRICS_NAMESPACE does not come from the MetricsNamespace parameter"
    )
    ns = resolve(t, {"Ref": NAMESPACE_PARAMETER})
    assert ns and not ns.startswith("AWS/"), f"namespace default {ns!r}"
    for namespace, metric, *_ in dashboard_metrics(t):
        assert namespace == "${" + NAMESPACE_PARAMETER + "}", f"the dashboard graphs {metric} from {namespace}"


def check_every_failure_class_has_a_dead_letter_metric_alarm(t: dict) -> None:
    alarms = metric_alarms(t, "DeadLettered", "ErrorClass")
    for c in ERROR_CLASSES:
        assert c in alarms, f"no alarm on DeadLettered for {c}"
        p = alarms[c]
        assert p.get("Statistic") == "Sum", f"the {c} alarm does not count dead letters"
        assert p.get("ComparisonOperator") == "GreaterThanThreshold" and float(p.get("Threshold")) == 0, (
            f"the {c} alarm does not fire on the first dead letter"
        )
        assert p.get("TreatMissingData") == "notBreaching", f"the {c} alarm fires when nothing happens"
        assert "AlarmActions" in p, f"the {c} alarm notifies no one, even with AlarmTopicArn set"


def check_throttles_raise_an_alarm_per_operation(t: dict) -> None:
    alarms = metric_alarms(t, "ConnectThrottled", "Operation")
    for op in OPERATIONS:
        assert op in alarms, f"no alarm on ConnectThrottled for {op}"
        p = alarms[op]
        assert p.get("Statistic") == "Sum", f"the {op} alarm does not count throttles"
        assert as_int(t, p.get("Threshold")) >= 1
        assert p.get("TreatMissingData") == "notBreaching", f"the {op} alarm fires when nothing happens"
        assert "AlarmActions" in p, f"the {op} alarm notifies no one, even with AlarmTopicArn set"


def check_dashboard_shows_outcomes_dead_letters_throttles_and_limiter_wait(t: dict) -> None:
    lines = {line[1:] for line in dashboard_metrics(t)}
    for m in OUTCOMES:
        assert (m, None, None) in lines, f"the dashboard does not graph {m}"
    for c in ERROR_CLASSES:
        assert ("DeadLettered", "ErrorClass", c) in lines, f"the dashboard does not graph {c} dead letters"
    for op in OPERATIONS:
        assert ("ConnectThrottled", "Operation", op) in lines, f"the dashboard does not graph {op} throttles"
    assert ("LimiterWait", None, None) in lines, "the dashboard does not graph the limiter wait"


FUTURE_METRIC = "FutureOccurredAtRefused"


def function_log_group(t: dict) -> str:
    return ref_target(props(t, FUNCTION).get("LoggingConfig", {}).get("LogGroup"))


def check_refused_future_times_are_counted_and_raise_an_alarm(t: dict) -> None:
    found = [
        (f["Properties"], m)
        for f in resources(t, "AWS::Logs::MetricFilter").values()
        for m in f["Properties"].get("MetricTransformations", [])
        if m.get("MetricName") == FUTURE_METRIC
    ]
    assert len(found) == 1, f"no metric counts the changes refused for a future OccurredAt ({FUTURE_METRIC})"
    p, m = found[0]
    assert ref_target(p.get("LogGroupName")) == function_log_group(t), "the filter reads another log group"
    assert ref_target(m.get("MetricNamespace")) == NAMESPACE_PARAMETER, "the metric goes to another namespace"
    assert str(m.get("MetricValue")) == "1", "each refused record must count one"
    # The pattern names the start of the message the function writes for the refusal.
    match = re.fullmatch(r'\{\s*\$\.fields\.error_message\s*=\s*"([^"*]+)\*?"\s*\}', p.get("FilterPattern", ""))
    assert match, f"the filter does not read the record's error_message: {p.get('FilterPattern')!r}"
    source = (REPO / "src" / "domain" / "document.rs").read_text()
    assert match.group(1) in source, f"the function writes no message starting {match.group(1)!r}"
    alarms = [
        a["Properties"]
        for a in resources(t, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == FUTURE_METRIC
    ]
    assert alarms, f"no alarm on {FUTURE_METRIC}"
    a = alarms[0]
    assert ref_target(a.get("Namespace")) == NAMESPACE_PARAMETER, "the alarm watches another namespace"
    assert a.get("Statistic") == "Sum" and a.get("ComparisonOperator") == "GreaterThanThreshold", "not a count"
    assert float(a.get("Threshold")) == 0, "the alarm does not fire on the first refusal"
    assert a.get("TreatMissingData") == "notBreaching", "the alarm fires when nothing happens"
    assert "AlarmActions" in a, "the alarm notifies no one, even with AlarmTopicArn set"
    lines = {line[1:] for line in dashboard_metrics(t)}
    assert (FUTURE_METRIC, None, None) in lines, "the dashboard does not graph the refused future times"


def check_an_unusual_share_of_superseded_changes_raises_an_alarm(t: dict) -> None:
    found = []
    for a in resources(t, "AWS::CloudWatch::Alarm").values():
        p = a["Properties"]
        stats = {m["Id"]: m["MetricStat"] for m in p.get("Metrics", []) if "MetricStat" in m}
        names = {st["Metric"].get("MetricName"): i for i, st in stats.items()}
        if "Superseded" in names:
            found.append((p, stats, names))
    assert found, "no alarm on the share of superseded changes"
    p, stats, names = found[0]
    for name in ("Superseded", "Updated", "Unchanged"):
        assert name in names, f"the superseded share is not taken of {name}"
        st = stats[names[name]]
        assert ref_target(st["Metric"].get("Namespace")) == NAMESPACE_PARAMETER, f"{name} from another namespace"
        assert st.get("Stat") == "Sum", f"{name} is not counted"
    returned = [m for m in p["Metrics"] if m.get("ReturnData", True)]
    assert len(returned) == 1 and "Expression" in returned[0], "the alarm does not watch one expression"
    expression = returned[0]["Expression"]
    for name in ("Superseded", "Updated", "Unchanged"):
        assert names[name] in expression, f"the expression leaves out {name}"
    assert "/" in expression, "the alarm watches a count, not a share"
    assert as_int(t, p.get("EvaluationPeriods")) >= 2, "one busy period of redeliveries raises it"
    assert p.get("TreatMissingData") == "notBreaching", "the alarm fires when nothing happens"
    assert "AlarmActions" in p, "the alarm notifies no one, even with AlarmTopicArn set"
    lines = {line[1:] for line in dashboard_metrics(t)}
    assert ("Superseded", None, None) in lines, "the dashboard does not graph superseded changes"


def check_dry_run_is_off_unless_chosen(t: dict) -> None:
    env = function_env(t)
    value = resolve(t, env.get("DRY_RUN", "false"))
    assert str(value).lower() == "false", "the template deploys a dry run by default"


# ----------------------------------------------------------------------------- checks: SCIM endpoint (SPEC section 8)

SCIM_ACTIONS = {
    "connect:DescribeInstance",
    "connect:SearchUsers",
    "connect:ListUsers",
    "connect:DescribeUser",
    "sqs:SendMessage",
    "secretsmanager:GetSecretValue",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    # Only with QueueKmsKeyArn: sending to a queue under a customer-managed key.
    "kms:Decrypt",
    "kms:GenerateDataKey",
}


def check_scim_endpoint_is_an_http_api_at_scim_v2(t: dict) -> None:
    """The endpoint: its own binary behind an HTTP API (payload 2.0) at /scim/v2, stage
    throttling on, the tenant URL as an output."""
    fn = t["Resources"][SCIM_FUNCTION]
    assert fn.get("Metadata", {}).get("BuildProperties", {}).get("Binary") == "connect-identity-sync-scim"
    events = list(fn["Properties"].get("Events", {}).values())
    assert len(events) == 1 and events[0]["Type"] == "HttpApi", f"events {events}"
    ev = events[0]["Properties"]
    assert ref_target(ev.get("ApiId")) == SCIM_API
    assert ev.get("Path", "").startswith("/scim/v2/"), f"path {ev.get('Path')!r}"
    assert str(ev.get("PayloadFormatVersion")) == "2.0"
    assert resources(t)[SCIM_API]["Type"] == "AWS::Serverless::HttpApi"
    route = props(t, SCIM_API).get("DefaultRouteSettings", {})
    assert route.get("ThrottlingRateLimit") is not None and route.get("ThrottlingBurstLimit") is not None, (
        "the SCIM stage is not throttled"
    )
    env = scim_env(t)
    assert ref_target(env.get("SOURCE_QUEUE_URL")) == SOURCE_QUEUE
    assert ref_target(env.get("SCIM_TOKEN_SECRET_ARN")) == SCIM_SECRET_PARAMETER
    for var in ("DEFAULT_INSTANCE_ID", "ALLOWED_INSTANCE_IDS", "EMAIL_DOMAIN_ALLOWLIST",
                "PROTECTED_SECURITY_PROFILE_IDS", "DEFAULT_PHONE_REGION"):
        assert env.get(var) == function_env(t).get(var), f"the endpoint's {var} is not the function's"
    outputs = t.get("Outputs", {})
    url = [o for o in outputs.values() if SCIM_API in json.dumps(o.get("Value")) and "/scim/v2" in json.dumps(o.get("Value"))]
    assert url, "no tenant URL output"


def check_scim_role_reads_the_instance_queues_to_the_source_and_reads_one_secret(t: dict) -> None:
    """The endpoint's role: reads of the one instance, SendMessage on the source queue
    alone, GetSecretValue on the token secret alone; never UpdateUserIdentityInfo."""
    assert ref_target(props(t, SCIM_FUNCTION).get("Role")) == SCIM_ROLE
    for _, d in deployments(t):
        for st in role_statements(d, SCIM_ROLE):
            for a in actions(st):
                assert a in SCIM_ACTIONS, f"the SCIM role allows {a!r}, which the endpoint does not use"
    sends, secrets = set(), set()
    for st in role_statements(t, SCIM_ROLE):
        for a in actions(st):
            if a == "sqs:SendMessage":
                sends |= {ref_target(r) for r in as_list(st.get("Resource"))}
            if a == "secretsmanager:GetSecretValue":
                secrets |= {ref_target(r) for r in as_list(st.get("Resource"))}
    assert sends == {SOURCE_QUEUE}, f"the SCIM role may send to {sorted(map(str, sends))}"
    assert secrets == {SCIM_SECRET_PARAMETER}, f"the SCIM role may read secrets {sorted(map(str, secrets))}"


def check_source_queue_names_the_scim_role_as_a_publisher(t: dict) -> None:
    """The endpoint's role may send to the source queue in every deployment; nobody else
    gains anything by it."""
    for params, d in deployments(t):
        got = queue_policy_decision(d, SOURCE_QUEUE, f"{SCIM_ROLE}.Arn", "sqs:SendMessage",
                                    iam_request(f"{SCIM_ROLE}.Arn")[1])
        assert got == "allow", f"{params}: the SCIM endpoint cannot queue ({got})"


def check_scim_auth_failures_and_server_errors_raise_alarms(t: dict) -> None:
    alarms = [a["Properties"] for a in resources(t, "AWS::CloudWatch::Alarm").values()]
    auth = [a for a in alarms if a.get("MetricName") == "ScimAuthFailures"
            and ref_target(a.get("Namespace")) == NAMESPACE_PARAMETER]
    errors = [a for a in alarms if a.get("MetricName") == "5xx" and a.get("Namespace") == "AWS/ApiGateway"
              and any(ref_target(dim.get("Value")) == SCIM_API for dim in a.get("Dimensions", []))]
    for name, found in (("authentication failures", auth), ("5xx", errors)):
        assert found, f"no alarm on the SCIM endpoint's {name}"
        for a in found:
            assert a.get("AlarmActions"), f"the {name} alarm notifies no one"
            assert a.get("Statistic") == "Sum", f"the {name} alarm is not on the sum"
