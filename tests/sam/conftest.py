"""The stack `sam local start-lambda` serves the function on, as a user's integration suite
would set it up: moto (SQS) with one dead-letter queue per failure class, the Connect
emulator seeded with the demo contact centre, and start-lambda on the built template in the
provided.al2023 stand-in image. scripts/sam-local sets the variables below."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "ConnectIdentitySyncFunction"
INSTANCE = "11111111-2222-3333-4444-555555555555"
CLASSES = {
    "MalformedEvent": "DLQ_URL_MALFORMED_EVENT",
    "ValidationError": "DLQ_URL_VALIDATION_ERROR",
    "PolicyViolation": "DLQ_URL_POLICY_VIOLATION",
    "InvalidRequestException": "DLQ_URL_INVALID_REQUEST",
    "InvalidParameterException": "DLQ_URL_INVALID_PARAMETER",
    "ResourceNotFoundException": "DLQ_URL_RESOURCE_NOT_FOUND",
    "ThrottlingException": "DLQ_URL_THROTTLING",
    "InternalServiceException": "DLQ_URL_INTERNAL_SERVICE",
    "UnknownError": "DLQ_URL_UNKNOWN",
}
DUMMY_AWS = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "start-lambda-dummy-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAM_CLI_TELEMETRY": "0",
}


def need(var):
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{var} is not set: run tests/sam through scripts/sam-local (make sam-local)")
    return value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"{what} did not listen on {port} within {seconds}s")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kebab(name):
    return "".join(("-" + c.lower()) if c.isupper() and i else c.lower() for i, c in enumerate(name))


class Emulator:
    def __init__(self, url):
        self.url = url

    def get(self, path):
        with urllib.request.urlopen(f"{self.url}/_emulator/{path}", timeout=10) as r:
            return json.load(r)

    def journal(self):
        return self.get("journal")

    def user(self, user_id):
        return self.get(f"users/{INSTANCE}/{user_id}")


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("start-lambda")
    procs = []
    try:
        moto_port = free_port()
        moto = subprocess.Popen(
            [need("MOTO_SERVER"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(moto)
        wait_for_port(moto_port, moto, 30, "moto")
        sqs_url = f"http://127.0.0.1:{moto_port}"

        emu_port = free_port()
        emulator = subprocess.Popen(
            [need("CONNECT_EMULATOR"), "--listen", f"127.0.0.1:{emu_port}",
             "--seed", str(ROOT / "demo/contact-centre.json"), "--quiet"],
            stdout=subprocess.DEVNULL)
        procs.append(emulator)
        wait_for_port(emu_port, emulator, 30, "the Connect emulator")
        connect_url = f"http://127.0.0.1:{emu_port}"

        sqs = boto3.client("sqs", endpoint_url=sqs_url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        dlqs = {c: sqs.create_queue(QueueName=f"dlq-{kebab(c)}")["QueueUrl"] for c in CLASSES}
        # The watermark table the template's function guards its updates with, in moto.
        dynamodb = boto3.client("dynamodb", endpoint_url=sqs_url, region_name="us-east-1",
                                aws_access_key_id="x", aws_secret_access_key="x")
        dynamodb.create_table(TableName="identity-watermarks", BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        env = {"AWS_ENDPOINT_URL_CONNECT": connect_url, "AWS_ENDPOINT_URL_SQS": sqs_url,
               "AWS_ENDPOINT_URL_DYNAMODB": sqs_url, "WATERMARK_TABLE": "identity-watermarks"}
        env.update({CLASSES[c]: url for c, url in dlqs.items()})
        env_vars = tmp / "env-vars.json"
        env_vars.write_text(json.dumps({FUNCTION: env}))

        lambda_port = free_port()
        # Only what SAM itself needs: a shell variable would override the template's own.
        sam_env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "DOCKER_HOST") if k in os.environ}
        sam_env.update(DUMMY_AWS)
        log = open(tmp / "start-lambda.log", "w")
        sam = subprocess.Popen(
            need("SAM_COMMAND").split() + [
                "local", "start-lambda", "--template", need("SAM_TEMPLATE"),
                "--invoke-image", need("SAM_IMAGE"), "--skip-pull-image",
                "--docker-network", "host", "--env-vars", str(env_vars),
                "--host", "127.0.0.1", "--port", str(lambda_port),
                "--parameter-overrides", *need("SAM_PARAMETERS").split()],
            env=sam_env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(sam)
        wait_for_port(lambda_port, sam, 120, "sam local start-lambda")

        client = boto3.client(
            "lambda", endpoint_url=f"http://127.0.0.1:{lambda_port}", region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
            config=Config(read_timeout=180, retries={"max_attempts": 1}))
        yield {"lambda": client, "sqs": sqs, "dlqs": dlqs, "emulator": Emulator(connect_url),
               "log": tmp / "start-lambda.log"}
    finally:
        for p in reversed(procs):
            stop(p)
