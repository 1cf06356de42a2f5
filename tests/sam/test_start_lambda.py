"""The function behind `sam local start-lambda`, invoked through boto3's Lambda client."""

import json

from conftest import FUNCTION, ROOT


def invoke(stack, event_file):
    payload = (ROOT / "events" / event_file).read_bytes()
    reply = stack["lambda"].invoke(FunctionName=FUNCTION, Payload=payload)
    body = json.loads(reply["Payload"].read())
    assert "FunctionError" not in reply, f"{body}\n{stack['log'].read_text()[-4000:]}"
    return body


def dead_letters(stack, cls):
    out = []
    while True:
        got = stack["sqs"].receive_message(
            QueueUrl=stack["dlqs"][cls], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return out
        for m in got:
            out.append(m["MessageAttributes"]["SourceId"]["StringValue"])
            stack["sqs"].delete_message(QueueUrl=stack["dlqs"][cls], ReceiptHandle=m["ReceiptHandle"])


def updates_of(stack, user_id):
    return [e for e in stack["emulator"].journal()
            if e["operation"] == "UpdateUserIdentityInfo" and e["userId"] == user_id and e["status"] == 200]


def test_an_eventbridge_change_through_the_lambda_client_updates_the_agent(stack):
    assert invoke(stack, "eventbridge-full-update.json") == {"outcome": "updated"}
    assert len(updates_of(stack, "u-jdoe")) == 1
    user = stack["emulator"].user("u-jdoe")
    assert user["IdentityInfo"]["LastName"] == "Doe-Carter"
    assert user["IdentityInfo"]["Mobile"] == "+14155550100"


def test_a_change_to_a_protected_agent_is_dead_lettered_and_connect_is_not_updated(stack):
    reply = invoke(stack, "eventbridge-protected-user.json")
    assert reply == {"outcome": "dead_lettered", "errorClass": "PolicyViolation"}
    assert dead_letters(stack, "PolicyViolation") == ["5d1f2a3c-0003-4b6e-9a1e-7c2f00000003"]
    assert updates_of(stack, "u-protected") == []


def test_a_mixed_sqs_batch_dead_letters_each_bad_record_by_class(stack):
    assert invoke(stack, "sqs-mixed-batch.json") == {"batchItemFailures": []}
    assert dead_letters(stack, "MalformedEvent") == ["0f8a1c52-2222-4d7e-8a55-000000000002"]
    assert dead_letters(stack, "ValidationError") == ["0f8a1c52-3333-4d7e-8a55-000000000003"]
    assert dead_letters(stack, "ResourceNotFoundException") == ["0f8a1c52-4444-4d7e-8a55-000000000004"]
    assert stack["emulator"].user("u-kobrien")["IdentityInfo"]["LastName"] == "O'Brien-Walsh"
