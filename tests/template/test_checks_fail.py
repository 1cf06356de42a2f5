"""Every check in checks.py fails on a template broken the way it guards against.

A check that passes on anything proves nothing: each case below breaks one property of a
copy of template.yaml and expects its check to raise.
"""

import json

import pytest

import checks
from checks import AGENT_ARN, FUNCTION, INSTANCE_ARN, SOURCE_QUEUE


def fn(t):
    return t["Resources"][FUNCTION]["Properties"]


def env(t):
    return fn(t)["Environment"]["Variables"]


def role(t):
    return t["Resources"][checks.function_role(t)]["Properties"]


def stmt(t, sid):
    for pol in role(t)["Policies"]:
        for st in pol["PolicyDocument"]["Statement"]:
            if st.get("Sid") == sid:
                return st
    raise KeyError(sid)


def param(t, name):
    return t["Parameters"][name]


def scim_stmt(t, sid):
    for pol in t["Resources"][checks.SCIM_ROLE]["Properties"]["Policies"]:
        for st in pol["PolicyDocument"]["Statement"]:
            if st.get("Sid") == sid:
                return st
    raise KeyError(sid)


def scim_fn(t):
    return t["Resources"][checks.SCIM_FUNCTION]["Properties"]


def ev(t):
    return fn(t)["Events"]["IdentityChanges"]["Properties"]


def qprops(t, lid):
    return t["Resources"][lid]["Properties"]


def alarm_on(t, queue):
    for lid, a in checks.resources(t, "AWS::CloudWatch::Alarm").items():
        dims = a["Properties"].get("Dimensions") or [{}]  # the SCIM auth alarm has none
        if checks.ref_target(dims[0].get("Value")) == queue:
            return lid
    raise KeyError(queue)


def queue_statements(t, queue):
    """The statements of `queue`'s policy (Fn::If entries included, as written)."""
    for res in checks.resources(t, "AWS::SQS::QueuePolicy").values():
        if checks.ref_target(res["Properties"]["Queues"][0]) == queue:
            return res["Properties"]["PolicyDocument"]["Statement"]
    raise KeyError(queue)


def queue_statement(t, queue, sid):
    for st in queue_statements(t, queue):
        if st.get("Sid") == sid:
            return st
    raise KeyError(sid)


def drop_statement(t, queue, sid):
    statements = queue_statements(t, queue)
    statements.remove(queue_statement(t, queue, sid))


def deny_condition(t, named):
    """The NoOtherSender deny's condition with (`named`) or without named senders."""
    branches = queue_statement(t, SOURCE_QUEUE, "NoOtherSender")["Condition"]["Fn::If"]
    return branches[1] if named else branches[2]


def drop_queue_policy(t, queue):
    for lid, res in list(checks.resources(t, "AWS::SQS::QueuePolicy").items()):
        if checks.ref_target(res["Properties"]["Queues"][0]) == queue:
            del t["Resources"][lid]
            return
    raise KeyError(queue)


def function_kms_statement(t):
    for pol in role(t)["Policies"]:
        statements = pol["PolicyDocument"]["Statement"]
        for st in statements:
            if "Fn::If" in st and st["Fn::If"][1].get("Sid") == "UseQueueKey":
                return statements, st
    raise KeyError("UseQueueKey")


def rule(t):
    return next(iter(checks.resources(t, "AWS::Events::Rule").values()))["Properties"]


def setitem(d, k, v):
    d[k] = v


def dashboard_lines(t, change):
    """Applies `change` to every graph line (a list) of the dashboard; a line for which it
    returns False is removed."""
    p = t["Resources"]["OperationsDashboard"]["Properties"]
    body = json.loads(p["DashboardBody"]["Fn::Sub"])
    for w in body["widgets"]:
        w["properties"]["metrics"] = [m for m in w["properties"]["metrics"] if change(m) is not False]
    p["DashboardBody"]["Fn::Sub"] = json.dumps(body)


def renamed(line, old, new):
    line[:] = [new if x == old else x for x in line]


CASES = [
    # IAM
    ("connect:* on users", checks.check_no_wildcard_action_for_connect_or_sqs,
     lambda t: setitem(stmt(t, "ReadAndUpdateUserIdentity"), "Action", "connect:*")),
    ("connect:Update* on users", checks.check_no_wildcard_action_for_connect_or_sqs,
     lambda t: setitem(stmt(t, "ReadAndUpdateUserIdentity"), "Action", ["connect:Update*"])),
    ("sqs:* on dead-letter queues", checks.check_no_wildcard_action_for_connect_or_sqs,
     lambda t: setitem(stmt(t, "DeadLetterByClass"), "Action", "sqs:*")),
    ("* action", checks.check_no_wildcard_action_for_connect_or_sqs,
     lambda t: setitem(stmt(t, "PollSourceQueue"), "Action", "*")),
    ("NotAction", checks.check_no_wildcard_action_for_connect_or_sqs,
     lambda t: setitem(stmt(t, "PollSourceQueue"), "NotAction", "iam:*")),
    ("Resource * for Connect", checks.check_no_connect_or_sqs_statement_on_every_resource,
     lambda t: setitem(stmt(t, "ReadConfiguredInstance"), "Resource", "*")),
    ("Resource * for SQS", checks.check_no_connect_or_sqs_statement_on_every_resource,
     lambda t: setitem(stmt(t, "DeadLetterByClass"), "Resource", ["*"])),
    ("every queue of the account", checks.check_no_connect_or_sqs_statement_on_every_resource,
     lambda t: setitem(stmt(t, "PollSourceQueue"), "Resource", {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:*"})),
    ("NotResource", checks.check_no_connect_or_sqs_statement_on_every_resource,
     lambda t: setitem(stmt(t, "DeadLetterByClass"), "NotResource", "arn:aws:sqs:us-east-1:123456789012:x")),
    ("an extra Connect action", checks.check_connect_actions_are_exactly_the_five_used,
     lambda t: stmt(t, "ReadAndUpdateUserIdentity")["Action"].append("connect:UpdateUserSecurityProfiles")),
    ("SearchUsers missing", checks.check_connect_actions_are_exactly_the_five_used,
     lambda t: setitem(stmt(t, "FindUsersByUsername"), "Action", "connect:DescribeUser")),
    ("ListUsers missing", checks.check_connect_actions_are_exactly_the_five_used,
     lambda t: setitem(stmt(t, "IndexUsernames"), "Action", "connect:SearchUsers")),
    ("ListUsers on every instance", checks.check_connect_actions_only_on_the_configured_instance,
     lambda t: setitem(stmt(t, "IndexUsernames"), "Resource",
                       {"Fn::Sub": "arn:${AWS::Partition}:connect:${AWS::Region}:${AWS::AccountId}:instance/*"})),
    ("ListUsers on the instance's agents", checks.check_connect_actions_only_on_the_configured_instance,
     lambda t: setitem(stmt(t, "IndexUsernames"), "Resource", [{"Fn::Sub": INSTANCE_ARN}, {"Fn::Sub": AGENT_ARN}])),
    ("users of every instance", checks.check_connect_actions_only_on_the_configured_instance,
     lambda t: setitem(stmt(t, "ReadAndUpdateUserIdentity"), "Resource",
                       {"Fn::Sub": "arn:${AWS::Partition}:connect:${AWS::Region}:${AWS::AccountId}:instance/*/agent/*"})),
    ("update granted on the instance itself", checks.check_connect_actions_only_on_the_configured_instance,
     lambda t: setitem(stmt(t, "ReadAndUpdateUserIdentity"), "Resource", [{"Fn::Sub": INSTANCE_ARN}, {"Fn::Sub": AGENT_ARN}])),
    ("DescribeInstance on another instance", checks.check_connect_actions_only_on_the_configured_instance,
     lambda t: setitem(stmt(t, "ReadConfiguredInstance"), "Resource",
                       "arn:aws:connect:us-east-1:123456789012:instance/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")),
    ("SendMessage on the catch-all", checks.check_send_message_only_on_dead_letter_queues_and_the_source_queue,
     lambda t: stmt(t, "DeadLetterByClass")["Resource"].append({"Fn::GetAtt": ["SourceCatchAllDeadLetterQueue", "Arn"]})),
    ("SendMessage missing on the source queue", checks.check_send_message_only_on_dead_letter_queues_and_the_source_queue,
     lambda t: setitem(stmt(t, "QueueDeferredRecordsAgain"), "Resource", {"Fn::GetAtt": ["ThrottlingDeadLetterQueue", "Arn"]})),
    ("SendMessage missing on a class queue", checks.check_send_message_only_on_dead_letter_queues_and_the_source_queue,
     lambda t: stmt(t, "DeadLetterByClass")["Resource"].pop()),
    ("polling a dead-letter queue", checks.check_polling_only_on_the_source_queue,
     lambda t: setitem(stmt(t, "PollSourceQueue"), "Resource", [{"Fn::GetAtt": [SOURCE_QUEUE, "Arn"]},
                                                                 {"Fn::GetAtt": ["ThrottlingDeadLetterQueue", "Arn"]}])),
    ("cannot delete polled records", checks.check_polling_only_on_the_source_queue,
     lambda t: stmt(t, "PollSourceQueue")["Action"].remove("sqs:DeleteMessage")),
    ("an unused action", checks.check_role_statements_only_allow_what_the_function_uses,
     lambda t: stmt(t, "PollSourceQueue")["Action"].append("sqs:PurgeQueue")),
    ("a managed policy", checks.check_role_statements_only_allow_what_the_function_uses,
     lambda t: setitem(role(t), "ManagedPolicyArns", ["arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"])),
    # Queues
    ("a queue without encryption", checks.check_every_queue_is_encrypted,
     lambda t: qprops(t, "UnknownErrorDeadLetterQueue").pop("SqsManagedSseEnabled")),
    ("encryption turned off", checks.check_every_queue_is_encrypted,
     lambda t: setitem(qprops(t, SOURCE_QUEUE), "SqsManagedSseEnabled", False)),
    ("a class queue keeping 4 days", checks.check_dead_letter_queues_keep_messages_fourteen_days,
     lambda t: setitem(qprops(t, "PolicyViolationDeadLetterQueue"), "MessageRetentionPeriod", 345600)),
    ("the catch-all queue at the default retention", checks.check_dead_letter_queues_keep_messages_fourteen_days,
     lambda t: qprops(t, checks.redrive_target(t)).pop("MessageRetentionPeriod")),
    ("a queue deleted with the stack", checks.check_queues_outlive_the_stack,
     lambda t: t["Resources"]["ValidationErrorDeadLetterQueue"].pop("DeletionPolicy")),
    ("visibility timeout of 2 function timeouts", checks.check_visibility_timeout_is_six_function_timeouts,
     lambda t: setitem(qprops(t, SOURCE_QUEUE), "VisibilityTimeout", 60)),
    ("a longer function timeout", checks.check_visibility_timeout_is_six_function_timeouts,
     lambda t: setitem(t["Globals"]["Function"], "Timeout", 60)),
    ("SQS redrives before the function gives up", checks.check_redrive_comes_after_the_function_gives_up,
     lambda t: setitem(qprops(t, SOURCE_QUEUE)["RedrivePolicy"], "maxReceiveCount", 3)),
    ("no margin for handed-back records", checks.check_redrive_comes_after_the_function_gives_up,
     lambda t: setitem(env(t), "MAX_RECEIVE_COUNT", "5")),
    ("a class without its variable", checks.check_every_failure_class_has_its_own_queue,
     lambda t: env(t).pop("DLQ_URL_THROTTLING")),
    ("two classes sharing a queue", checks.check_every_failure_class_has_its_own_queue,
     lambda t: setitem(env(t), "DLQ_URL_UNKNOWN", {"Ref": "ThrottlingDeadLetterQueue"})),
    ("a class dead-lettered into the source queue", checks.check_every_failure_class_has_its_own_queue,
     lambda t: setitem(env(t), "DLQ_URL_UNKNOWN", {"Ref": SOURCE_QUEUE})),
    ("a class queue without alarm", checks.check_every_dead_letter_queue_has_an_alarm,
     lambda t: t["Resources"].pop(alarm_on(t, "InternalServiceDeadLetterQueue"))),
    ("the catch-all queue without alarm", checks.check_every_dead_letter_queue_has_an_alarm,
     lambda t: t["Resources"].pop(alarm_on(t, checks.redrive_target(t)))),
    ("an alarm that waits for two messages", checks.check_every_dead_letter_queue_has_an_alarm,
     lambda t: setitem(t["Resources"][alarm_on(t, "MalformedEventDeadLetterQueue")]["Properties"], "Threshold", 1)),
    ("an alarm that notifies no one", checks.check_every_dead_letter_queue_has_an_alarm,
     lambda t: t["Resources"][alarm_on(t, "UnknownErrorDeadLetterQueue")]["Properties"].pop("AlarmActions")),
    # Function and event source
    ("built for x86_64", checks.check_function_build,
     lambda t: setitem(fn(t), "Architectures", ["x86_64"])),
    ("not built with cargo-lambda", checks.check_function_build,
     lambda t: setitem(t["Resources"][FUNCTION]["Metadata"], "BuildMethod", "makefile")),
    ("another binary", checks.check_function_build,
     lambda t: setitem(t["Resources"][FUNCTION]["Metadata"]["BuildProperties"], "Binary", "connect-emulator")),
    ("whole batches fail together", checks.check_event_source_reports_failures_and_bounds_concurrency,
     lambda t: ev(t).pop("FunctionResponseTypes")),
    ("unbounded concurrency", checks.check_event_source_reports_failures_and_bounds_concurrency,
     lambda t: ev(t).pop("ScalingConfig")),
    ("a fixed 1 update/s a container, whatever the concurrency", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: setitem(env(t), "CONNECT_RPS_UPDATE", "1")),
    ("the quota shared by 2 containers when up to 50 run", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: setitem(env(t), "CONNECT_RPS_DESCRIBE", {"Fn::Sub": "${ConnectQuotaDescribe}/2"})),
    ("a stated search quota above Connect's", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: setitem(param(t, "ConnectQuotaSearch"), "Default", 4)),
    ("a stated ListUsers quota above Connect's", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: setitem(param(t, "ConnectQuotaList"), "Default", 20)),
    ("no per-container search rate", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: env(t).pop("CONNECT_RPS_SEARCH")),
    ("no per-container list rate", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: env(t).pop("CONNECT_RPS_LIST")),
    ("so many containers that a share is below what the function accepts", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: setitem(param(t, "MaximumConcurrency"), "MaxValue", 1000)),
    ("the old MinValue 1 per container (5 containers ask for 5 updates/s)", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: (setitem(env(t), "CONNECT_RPS_UPDATE", {"Ref": "ConnectQuotaUpdate"}),
                setitem(param(t, "ConnectQuotaUpdate"), "Default", 1),
                setitem(param(t, "ConnectQuotaUpdate"), "MinValue", 1))),
    ("no fleet-wide update rate", checks.check_the_fleet_keeps_one_update_rate_within_the_stacks_quota,
     lambda t: env(t).pop("CONNECT_FLEET_RPS_UPDATE")),
    ("a fleet rate of the whole account's quota whatever the stack was given",
     checks.check_the_fleet_keeps_one_update_rate_within_the_stacks_quota,
     lambda t: setitem(env(t), "CONNECT_FLEET_RPS_UPDATE", "2")),
    ("a batch too long for the timeout", checks.check_a_batch_fits_in_the_timeout,
     lambda t: setitem(t["Globals"]["Function"], "Timeout", 15)),
    ("every instance allowed", checks.check_defaults_refuse,
     lambda t: setitem(env(t), "ALLOWED_INSTANCE_IDS", "*")),
    ("every email domain allowed by default", checks.check_defaults_refuse,
     lambda t: setitem(param(t, "EmailDomainAllowlist"), "Default", "*")),
    ("a default instance", checks.check_defaults_refuse,
     lambda t: setitem(param(t, "ConnectInstanceId"), "Default", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")),
    ("instance id accepting anything", checks.check_defaults_refuse,
     lambda t: setitem(param(t, "ConnectInstanceId"), "AllowedPattern", ".*")),
    ("no SecondaryEmail allowlist", checks.check_defaults_refuse,
     lambda t: env(t).pop("SECONDARY_EMAIL_DOMAIN_ALLOWLIST")),
    ("any source trusted when the parameter is empty", checks.check_defaults_refuse,
     lambda t: setitem(env(t), "TRUSTED_SOURCES", {"Ref": "TrustedSources"})),
    ("text logs", checks.check_logs_are_json_in_an_explicit_group,
     lambda t: setitem(env(t), "AWS_LAMBDA_LOG_FORMAT", "Text")),
    ("logs kept forever", checks.check_logs_are_json_in_an_explicit_group,
     lambda t: t["Resources"]["FunctionLogGroup"]["Properties"].pop("RetentionInDays")),
    ("the image's CA bundle read at start-up", checks.check_no_ca_bundle_is_read,
     lambda t: setitem(env(t), "SSL_CERT_FILE", checks.AL2023_CA_BUNDLE)),
    # Staleness guard
    ("a provisioned watermark table", checks.check_watermark_table_is_on_demand_encrypted_recoverable_and_expiring,
     lambda t: setitem(qprops(t, "WatermarkTable"), "BillingMode", "PROVISIONED")),
    ("a watermark table on the AWS owned key", checks.check_watermark_table_is_on_demand_encrypted_recoverable_and_expiring,
     lambda t: qprops(t, "WatermarkTable").pop("SSESpecification")),
    ("no point-in-time recovery", checks.check_watermark_table_is_on_demand_encrypted_recoverable_and_expiring,
     lambda t: setitem(qprops(t, "WatermarkTable")["PointInTimeRecoverySpecification"], "PointInTimeRecoveryEnabled", False)),
    ("TTL on an attribute the function does not write", checks.check_watermark_table_is_on_demand_encrypted_recoverable_and_expiring,
     lambda t: setitem(qprops(t, "WatermarkTable")["TimeToLiveSpecification"], "AttributeName", "ttl")),
    ("a numeric partition key", checks.check_watermark_table_is_on_demand_encrypted_recoverable_and_expiring,
     lambda t: setitem(qprops(t, "WatermarkTable"), "AttributeDefinitions", [{"AttributeName": "pk", "AttributeType": "N"}])),
    ("no WATERMARK_TABLE", checks.check_function_uses_the_watermark_table,
     lambda t: env(t).pop("WATERMARK_TABLE")),
    ("watermarks kept 14 days", checks.check_watermarks_outlive_every_message_that_can_come_back,
     lambda t: setitem(env(t), "WATERMARK_TTL_DAYS", "14")),
    ("the default TTL with longer-lived dead letters", checks.check_watermarks_outlive_every_message_that_can_come_back,
     lambda t: (env(t).pop("WATERMARK_TTL_DAYS"), setitem(qprops(t, "UnknownErrorDeadLetterQueue"), "MessageRetentionPeriod", 1300000))),
    ("dynamodb:PutItem granted", checks.check_dynamodb_item_updates_only_on_the_watermark_table,
     lambda t: setitem(stmt(t, "LeaseAndAdvanceWatermarks"), "Action", ["dynamodb:UpdateItem", "dynamodb:PutItem"])),
    ("UpdateItem on every table", checks.check_dynamodb_item_updates_only_on_the_watermark_table,
     lambda t: setitem(stmt(t, "LeaseAndAdvanceWatermarks"), "Resource",
                       {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"})),
    ("UpdateItem missing", checks.check_dynamodb_item_updates_only_on_the_watermark_table,
     lambda t: setitem(stmt(t, "LeaseAndAdvanceWatermarks"), "Action", "dynamodb:GetItem")),
    ("no throttle alarm", checks.check_watermark_table_throttles_raise_an_alarm,
     lambda t: t["Resources"].pop("WatermarkTableThrottleAlarm")),
    ("a throttle alarm that notifies no one", checks.check_watermark_table_throttles_raise_an_alarm,
     lambda t: t["Resources"]["WatermarkTableThrottleAlarm"]["Properties"].pop("AlarmActions")),
    ("a throttle alarm on the average", checks.check_watermark_table_throttles_raise_an_alarm,
     lambda t: setitem(t["Resources"]["WatermarkTableThrottleAlarm"]["Properties"], "Statistic", "Average")),
    # EventBridge and outputs
    ("a rule matching every detail-type", checks.check_rule_filters_and_targets_the_source_queue,
     lambda t: rule(t)["EventPattern"].pop("detail-type")),
    ("a rule targeting a dead-letter queue", checks.check_rule_filters_and_targets_the_source_queue,
     lambda t: setitem(rule(t)["Targets"][0], "Arn", {"Fn::GetAtt": ["UnknownErrorDeadLetterQueue", "Arn"]})),
    # The source queue's senders (issue 22): each case lets an unnamed sender in.
    ("no deny for unnamed senders", checks.check_source_queue_refuses_every_sender_it_does_not_name,
     lambda t: drop_statement(t, SOURCE_QUEUE, "NoOtherSender")),
    ("a deny that spares every role of the account", checks.check_source_queue_refuses_every_sender_it_does_not_name,
     lambda t: setitem(deny_condition(t, named=False), "ArnNotLike", {"aws:PrincipalArn": "arn:aws:iam::*:role/*"})),
    ("a deny for plain HTTP senders only", checks.check_source_queue_refuses_every_sender_it_does_not_name,
     lambda t: setitem(deny_condition(t, named=True), "Bool", {"aws:SecureTransport": "false"})),
    ("a deny that spares any EventBridge rule", checks.check_source_queue_refuses_every_sender_it_does_not_name,
     lambda t: setitem(deny_condition(t, named=False), "ArnNotEquals",
                       {"aws:SourceArn": "arn:aws:events:*", "aws:PrincipalArn": checks.UNNAMED_SENDER.replace("developer", "x")})),
    ("the rule not allowed to deliver", checks.check_source_queue_refuses_every_sender_it_does_not_name,
     lambda t: drop_statement(t, SOURCE_QUEUE, "IdentityChangeRule")),
    ("the whole account allowed to send", checks.check_source_queue_refuses_every_sender_it_does_not_name,
     lambda t: (drop_statement(t, SOURCE_QUEUE, "NoOtherSender"),
                queue_statements(t, SOURCE_QUEUE).append({"Sid": "Account", "Effect": "Allow", "Action": "sqs:SendMessage",
                                                         "Principal": {"AWS": f"arn:aws:iam::{checks.ACCOUNT}:root"}}))),
    ("a deny that refuses the function's own copies", checks.check_source_queue_refuses_every_sender_it_does_not_name,
     lambda t: deny_condition(t, named=False)["ArnNotEquals"].pop("aws:PrincipalArn")),
    ("a deny that also refuses the rule", checks.check_source_queue_refuses_every_sender_it_does_not_name,
     lambda t: deny_condition(t, named=False)["ArnNotEquals"].pop("aws:SourceArn")),
    ("a redrive role anyone in the account may assume", checks.check_source_queue_refuses_every_sender_it_does_not_name,
     lambda t: setitem(t["Resources"]["RedriveRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0], "Principal",
                       {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}})),
    # The dead-letter queues' senders: each case lets an unnamed sender plant a change
    # that a redrive would send back to the source queue as the redrive role.
    ("a class queue open to the account", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: drop_statement(t, "ThrottlingDeadLetterQueue", "OnlyTheFunctionSends")),
    ("a class queue with only the TLS deny", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: [drop_statement(t, f"{c}DeadLetterQueue", "OnlyTheFunctionSends") for c in ("MalformedEvent", "UnknownError")]),
    ("a class queue sparing every role of the account", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: setitem(queue_statement(t, "PolicyViolationDeadLetterQueue", "OnlyTheFunctionSends"), "Condition",
                       {"ArnNotLike": {"aws:PrincipalArn": [{"Fn::GetAtt": ["FunctionRole", "Arn"]}, "arn:aws:iam::*:role/*"]}})),
    ("a class queue sparing the redrive role", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: setitem(queue_statement(t, "ValidationErrorDeadLetterQueue", "OnlyTheFunctionSends")["Condition"]["ArnNotEquals"],
                       "aws:PrincipalArn", [{"Fn::GetAtt": ["FunctionRole", "Arn"]}, {"Fn::GetAtt": ["RedriveRole", "Arn"]}])),
    ("a class queue denying sends over plain HTTP only", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: setitem(queue_statement(t, "InternalServiceDeadLetterQueue", "OnlyTheFunctionSends"), "Condition",
                       {"Bool": {"aws:SecureTransport": "false"}})),
    ("a class queue whose deny asks for a source, refusing the function too",
     checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: setitem(queue_statement(t, "ResourceNotFoundDeadLetterQueue", "OnlyTheFunctionSends"), "Condition",
                       {"ArnNotEquals": {"aws:SourceArn": {"Fn::GetAtt": ["FunctionRole", "Arn"]}}})),
    ("a class queue refusing the function itself", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: queue_statement(t, "InvalidRequestDeadLetterQueue", "OnlyTheFunctionSends").pop("Condition")),
    ("a class queue whose deny also spares a developer role", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: setitem(queue_statement(t, "InvalidParameterDeadLetterQueue", "OnlyTheFunctionSends")["Condition"]["ArnNotEquals"],
                       "aws:PrincipalArn", [{"Fn::GetAtt": ["FunctionRole", "Arn"]}, checks.UNNAMED_SENDER])),
    ("the catch-all queue open to the account", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: drop_statement(t, checks.redrive_target(t), "OnlyTheRuleSends")),
    ("the catch-all queue open to any EventBridge rule", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: [setitem(queue_statement(t, checks.redrive_target(t), sid), "Condition",
                        {op: {"aws:SourceArn": [{"Fn::GetAtt": ["IdentityChangeRule", "Arn"]}, "arn:aws:events:*"]}})
                for sid, op in (("OnlyTheRuleSends", "ArnNotLike"), ("UndeliverableIdentityChangeEvents", "ArnLike"))]),
    ("the catch-all queue sparing the function's role", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: setitem(queue_statement(t, checks.redrive_target(t), "OnlyTheRuleSends")["Condition"]["ArnNotEquals"],
                       "aws:PrincipalArn", {"Fn::GetAtt": ["FunctionRole", "Arn"]})),
    ("the rule not allowed to dead-letter", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: drop_statement(t, checks.redrive_target(t), "UndeliverableIdentityChangeEvents")),
    ("the rule dead-lettering into a class queue", checks.check_dead_letter_queues_refuse_every_sender_but_their_own,
     lambda t: setitem(rule(t)["Targets"][0]["DeadLetterConfig"], "Arn", {"Fn::GetAtt": ["UnknownErrorDeadLetterQueue", "Arn"]})),
    # TLS only, on every queue.
    ("a dead-letter queue without a policy", checks.check_every_queue_refuses_plain_http,
     lambda t: drop_queue_policy(t, "PolicyViolationDeadLetterQueue")),
    ("the source queue accepting plain HTTP", checks.check_every_queue_refuses_plain_http,
     lambda t: drop_statement(t, SOURCE_QUEUE, "HttpsOnly")),
    ("the catch-all queue accepting plain HTTP", checks.check_every_queue_refuses_plain_http,
     lambda t: drop_statement(t, checks.redrive_target(t), "HttpsOnly")),
    ("a TLS deny on sends only", checks.check_every_queue_refuses_plain_http,
     lambda t: setitem(queue_statement(t, "UnknownErrorDeadLetterQueue", "HttpsOnly"), "Action", "sqs:SendMessage")),
    ("a TLS deny that asks for the wrong value", checks.check_every_queue_refuses_plain_http,
     lambda t: setitem(queue_statement(t, "ThrottlingDeadLetterQueue", "HttpsOnly")["Condition"]["Bool"], "aws:SecureTransport", "true")),
    # A customer-managed key.
    ("a queue that ignores the key parameter", checks.check_every_queue_is_encrypted,
     lambda t: (qprops(t, "ValidationErrorDeadLetterQueue").pop("KmsMasterKeyId"),
                setitem(qprops(t, "ValidationErrorDeadLetterQueue"), "SqsManagedSseEnabled", True))),
    ("the function role cannot use the key", checks.check_a_queue_key_is_usable_by_every_role_that_reads_or_writes_the_queues,
     lambda t: (lambda sts, st: sts.remove(st))(*function_kms_statement(t))),
    ("the function role may use every key", checks.check_a_queue_key_is_usable_by_every_role_that_reads_or_writes_the_queues,
     lambda t: setitem(function_kms_statement(t)[1]["Fn::If"][1], "Resource", "*")),
    ("a KMS grant without a key", checks.check_a_queue_key_is_usable_by_every_role_that_reads_or_writes_the_queues,
     lambda t: setitem(function_kms_statement(t)[1]["Fn::If"], 2, dict(function_kms_statement(t)[1]["Fn::If"][1], Resource="*"))),
    ("a queue URL missing from the outputs", checks.check_outputs,
     lambda t: t["Outputs"].pop("ThrottlingDeadLetterQueueUrl")),
    # Metrics and dry run
    ("metrics in a fixed namespace", checks.check_metrics_go_to_the_configured_namespace,
     lambda t: setitem(env(t), "METRICS_NAMESPACE", "ConnectIdentitySync")),
    ("a dashboard graphing another namespace", checks.check_metrics_go_to_the_configured_namespace,
     lambda t: dashboard_lines(t, lambda m: "UnknownError" not in m or renamed(m, "${MetricsNamespace}", "Other"))),
    ("a class without a dead-letter metric alarm", checks.check_every_failure_class_has_a_dead_letter_metric_alarm,
     lambda t: t["Resources"].pop("PolicyViolationDeadLetteredAlarm")),
    ("a dead-letter metric alarm averaging", checks.check_every_failure_class_has_a_dead_letter_metric_alarm,
     lambda t: setitem(t["Resources"]["UnknownErrorDeadLetteredAlarm"]["Properties"], "Statistic", "Average")),
    ("a dead-letter metric alarm waiting for two", checks.check_every_failure_class_has_a_dead_letter_metric_alarm,
     lambda t: setitem(t["Resources"]["MalformedEventDeadLetteredAlarm"]["Properties"], "Threshold", 1)),
    ("a dead-letter metric alarm in another namespace", checks.check_every_failure_class_has_a_dead_letter_metric_alarm,
     lambda t: setitem(t["Resources"]["ValidationErrorDeadLetteredAlarm"]["Properties"], "Namespace", "AWS/Lambda")),
    ("no throttle alarm for updates", checks.check_throttles_raise_an_alarm_per_operation,
     lambda t: t["Resources"].pop("UpdateUserIdentityInfoThrottledAlarm")),
    ("a throttle alarm that notifies no one", checks.check_throttles_raise_an_alarm_per_operation,
     lambda t: t["Resources"]["SearchUsersThrottledAlarm"]["Properties"].pop("AlarmActions")),
    ("a dashboard without a class", checks.check_dashboard_shows_outcomes_dead_letters_throttles_and_limiter_wait,
     lambda t: dashboard_lines(t, lambda m: "ThrottlingException" not in m)),
    ("a dashboard without the limiter wait", checks.check_dashboard_shows_outcomes_dead_letters_throttles_and_limiter_wait,
     lambda t: dashboard_lines(t, lambda m: "LimiterWait" not in m)),
    # time
    ("no metric of refused future times", checks.check_refused_future_times_are_counted_and_raise_an_alarm,
     lambda t: t["Resources"].pop("FutureOccurredAtMetricFilter")),
    ("a filter on a message the function does not write", checks.check_refused_future_times_are_counted_and_raise_an_alarm,
     lambda t: setitem(qprops(t, "FutureOccurredAtMetricFilter"), "FilterPattern", '{ $.fields.error_message = "OccurredAt is in the future*" }')),
    ("a filter on the message text, not the field", checks.check_refused_future_times_are_counted_and_raise_an_alarm,
     lambda t: setitem(qprops(t, "FutureOccurredAtMetricFilter"), "FilterPattern", '"MAX_CLOCK_SKEW_SECONDS"')),
    ("no alarm on refused future times", checks.check_refused_future_times_are_counted_and_raise_an_alarm,
     lambda t: t["Resources"].pop("FutureOccurredAtRefusedAlarm")),
    ("a future-time alarm waiting for two", checks.check_refused_future_times_are_counted_and_raise_an_alarm,
     lambda t: setitem(qprops(t, "FutureOccurredAtRefusedAlarm"), "Threshold", 1)),
    ("a dashboard without refused future times", checks.check_refused_future_times_are_counted_and_raise_an_alarm,
     lambda t: dashboard_lines(t, lambda m: "FutureOccurredAtRefused" not in m)),
    ("no alarm on the superseded share", checks.check_an_unusual_share_of_superseded_changes_raises_an_alarm,
     lambda t: t["Resources"].pop("SupersededShareAlarm")),
    ("a superseded alarm on the count alone", checks.check_an_unusual_share_of_superseded_changes_raises_an_alarm,
     lambda t: setitem(qprops(t, "SupersededShareAlarm")["Metrics"][0], "Expression", "superseded + updated + unchanged")),
    ("a superseded alarm on one period", checks.check_an_unusual_share_of_superseded_changes_raises_an_alarm,
     lambda t: setitem(qprops(t, "SupersededShareAlarm"), "EvaluationPeriods", 1)),
    ("a superseded alarm that notifies no one", checks.check_an_unusual_share_of_superseded_changes_raises_an_alarm,
     lambda t: qprops(t, "SupersededShareAlarm").pop("AlarmActions")),
    ("a dry run by default", checks.check_dry_run_is_off_unless_chosen,
     lambda t: setitem(param(t, "DryRun"), "Default", "true")),
    # SCIM endpoint (SPEC section 8)
    ("a SCIM endpoint on a REST API event", checks.check_scim_endpoint_is_an_http_api_at_scim_v2,
     lambda t: setitem(next(iter(scim_fn(t)["Events"].values())), "Type", "Api")),
    ("a SCIM endpoint with payload 1.0", checks.check_scim_endpoint_is_an_http_api_at_scim_v2,
     lambda t: setitem(next(iter(scim_fn(t)["Events"].values()))["Properties"], "PayloadFormatVersion", "1.0")),
    ("a SCIM stage without throttling", checks.check_scim_endpoint_is_an_http_api_at_scim_v2,
     lambda t: t["Resources"][checks.SCIM_API]["Properties"].pop("DefaultRouteSettings")),
    ("no tenant URL output", checks.check_scim_endpoint_is_an_http_api_at_scim_v2,
     lambda t: t["Outputs"].pop("ScimTenantUrl")),
    ("a SCIM endpoint with its own email allowlist", checks.check_scim_endpoint_is_an_http_api_at_scim_v2,
     lambda t: setitem(scim_fn(t)["Environment"]["Variables"], "EMAIL_DOMAIN_ALLOWLIST", "*")),
    ("a SCIM role that may update users", checks.check_scim_role_reads_the_instance_queues_to_the_source_and_reads_one_secret,
     lambda t: setitem(scim_stmt(t, "ReadUsers"), "Action", ["connect:DescribeUser", "connect:UpdateUserIdentityInfo"])),
    ("a SCIM role that may send to a dead-letter queue", checks.check_scim_role_reads_the_instance_queues_to_the_source_and_reads_one_secret,
     lambda t: setitem(scim_stmt(t, "QueueCheckedChanges"), "Resource",
                       [{"Fn::GetAtt": ["SourceQueue", "Arn"]}, {"Fn::GetAtt": ["UnknownErrorDeadLetterQueue", "Arn"]}])),
    ("a SCIM role that may read every secret", checks.check_scim_role_reads_the_instance_queues_to_the_source_and_reads_one_secret,
     lambda t: setitem(scim_stmt(t, "ReadTokens"), "Resource", {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:*"})),
    ("a source queue that refuses the SCIM endpoint", checks.check_source_queue_names_the_scim_role_as_a_publisher,
     lambda t: drop_statement(t, SOURCE_QUEUE, "ScimEndpoint")),
    ("no SCIM auth failure alarm", checks.check_scim_auth_failures_and_server_errors_raise_alarms,
     lambda t: t["Resources"].pop("ScimAuthFailureAlarm")),
    ("a SCIM 5xx alarm that notifies no one", checks.check_scim_auth_failures_and_server_errors_raise_alarms,
     lambda t: t["Resources"]["ScimServerErrorAlarm"]["Properties"].pop("AlarmActions")),
    ("a SCIM endpoint taking the whole describe quota", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: setitem(scim_fn(t)["Environment"]["Variables"], "CONNECT_RPS_DESCRIBE", {"Fn::Sub": "${ConnectQuotaDescribe}/1"})),
    ("a SCIM endpoint of unbounded concurrency", checks.check_connect_quota_is_shared_not_exceeded,
     lambda t: scim_fn(t).pop("ReservedConcurrentExecutions")),
]


@pytest.mark.parametrize("case,check,breaks", CASES, ids=[c[0] for c in CASES])
def test_check_fails_on_a_template_with(case, check, breaks, template):
    check(template)  # holds on the real template
    breaks(template)
    with pytest.raises(AssertionError):
        check(template)


def test_checks_of_the_deployed_template_fail_when_sam_generates_the_role(template):
    fn(template).pop("Role")  # SAM then makes a role with AWS managed policies on "*"
    with pytest.raises(AssertionError):
        checks.check_deployed_role_has_no_managed_policy(checks.transform_template(template))


def test_every_check_has_a_case_that_makes_it_fail():
    covered = {c[1].__name__ for c in CASES} | {"check_deployed_role_has_no_managed_policy"}
    defined = {n for n in dir(checks) if n.startswith("check_")}
    assert defined <= covered, f"checks no case breaks: {sorted(defined - covered)}"
