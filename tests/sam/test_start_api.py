"""The SCIM endpoint behind `sam local start-api`, from template.yaml's HTTP API: the requests
Microsoft Entra ID makes for an update (a look-up by userName, then a PatchOp), the change
found on the source queue, then applied by the function (through start-lambda) and read back."""

import json
import time
from datetime import datetime, timedelta, timezone

from conftest import FUNCTION, INSTANCE

USER = "u-tnguyen"
USERNAME = "tnguyen"


def lookup(scim, username):
    return scim.request("GET", f'/Users?filter=userName%20eq%20%22{username}%22')


def queued(stack):
    """Every message on the source queue, taken off it."""
    out = []
    while True:
        got = stack["sqs"].receive_message(
            QueueUrl=stack["source_queue"], MaxNumberOfMessages=10, AttributeNames=["All"],
            MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            return out
        for m in got:
            out.append(m)
            stack["sqs"].delete_message(QueueUrl=stack["source_queue"], ReceiptHandle=m["ReceiptHandle"])


def test_a_wrong_token_is_refused_401_and_queues_nothing(stack, scim):
    status, body = scim.request("GET", f'/Users?filter=userName%20eq%20%22{USERNAME}%22',
                                token="not-the-token")
    assert status == 401, f"{body}\n{scim.log.read_text()[-4000:]}"
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == "401"
    assert queued(stack) == []


def test_entra_lookup_and_patch_are_answered_and_the_change_is_queued_then_applied(stack, scim):
    status, body = lookup(scim, USERNAME)
    assert status == 200, f"{body}\n{scim.log.read_text()[-4000:]}"
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert body["totalResults"] == 1
    user = body["Resources"][0]
    assert user["id"] == USER
    assert user["userName"] == USERNAME
    assert user["name"] == {"givenName": "Thanh", "familyName": "Nguyen"}
    assert user["phoneNumbers"] == [{"type": "mobile", "value": "+14155550140"}]
    assert user["meta"]["resourceType"] == "User"

    # Entra ID's PatchOp: capitalised ops, a string boolean, a filtered path, and attributes
    # that are no identity field (active, displayName) beside the two that are.
    before = time.time()
    status, body = scim.request("PATCH", f"/Users/{USER}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "name.familyName", "value": "Nguyen-Tran"},
            {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+14155550177"},
            {"op": "Replace", "path": "active", "value": "True"},
            {"op": "Replace", "path": "displayName", "value": "Thanh Nguyen-Tran"},
        ],
    })
    assert status == 204, f"{body}\n{scim.log.read_text()[-4000:]}"
    assert body is None

    messages = queued(stack)
    assert len(messages) == 1, messages
    doc = json.loads(messages[0]["Body"])
    assert doc["InstanceId"] == INSTANCE
    assert doc["UserId"] == USER
    assert doc["IdentityInfo"] == {"LastName": "Nguyen-Tran", "Mobile": "+14155550177"}, \
        "the changed identity fields only"
    assert doc["EventId"].startswith("scim-") and len(doc["EventId"]) > len("scim-")
    occurred = datetime.fromisoformat(doc["OccurredAt"].replace("Z", "+00:00"))
    assert timedelta(seconds=-1) <= occurred - datetime.fromtimestamp(before, timezone.utc) \
        <= timedelta(minutes=5)
    # The endpoint never updates Connect itself.
    assert stack["emulator"].user(USER)["IdentityInfo"]["LastName"] == "Nguyen"

    # The function applies what was queued, as its SQS event source mapping would deliver it.
    record = {
        "messageId": messages[0]["MessageId"], "receiptHandle": messages[0]["ReceiptHandle"],
        "body": messages[0]["Body"], "attributes": messages[0].get("Attributes", {}),
        "messageAttributes": {}, "md5OfBody": messages[0]["MD5OfBody"], "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:identity-changes",
        "awsRegion": "us-east-1",
    }
    reply = stack["lambda"].invoke(FunctionName=FUNCTION, Payload=json.dumps({"Records": [record]}))
    assert json.loads(reply["Payload"].read()) == {"batchItemFailures": []}
    identity = stack["emulator"].user(USER)["IdentityInfo"]
    assert identity["LastName"] == "Nguyen-Tran"
    assert identity["Mobile"] == "+14155550177"

    status, body = lookup(scim, USERNAME)
    assert status == 200
    assert body["Resources"][0]["name"]["familyName"] == "Nguyen-Tran"
    assert body["Resources"][0]["phoneNumbers"] == [{"type": "mobile", "value": "+14155550177"}]
